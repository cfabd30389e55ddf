import pytest

from forge.cli.child_run import run_forge_test, run_forge_train


def test_failed_run_exits_naming_caller_and_experiment(tmp_path, capsys):
    with pytest.raises(SystemExit, match="^mydemo: forge-train no/such_experiment failed"):
        run_forge_train("no/such_experiment", str(tmp_path / "w"), [], 1, "mydemo")
    assert capsys.readouterr().out.startswith("$ experiment=no/such_experiment")


def test_failed_test_run_exits_naming_caller_and_experiment(tmp_path, capsys):
    with pytest.raises(SystemExit, match="^mydemo: forge-test no/such_experiment failed"):
        run_forge_test("no/such_experiment", str(tmp_path / "w"), ["checkpoint=x.pth"], 1, "mydemo")
    assert capsys.readouterr().out.startswith("$ experiment=no/such_experiment")
