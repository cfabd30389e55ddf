"""forge-infer dispatches through the forge.infer entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from forge.cli import infer


def _fake(monkeypatch, **eps: str) -> None:
    """Make ``importlib.metadata.entry_points`` (as forge.cli.infer sees it) return only ``eps``."""
    found = [EntryPoint(name, value, infer.GROUP) for name, value in eps.items()]

    def entry_points(*, group: str):
        assert group == infer.GROUP
        return found

    monkeypatch.setattr(infer, "entry_points", entry_points)


def test_installed_papers_are_registered():
    assert {"yolact", "dynvit"} <= set(infer.commands())
    assert infer.commands()["yolact"].value == "yolact.infer:main"


def test_unknown_name_lists_the_known_ones(monkeypatch, capsys):
    _fake(monkeypatch, yolact="yolact.infer:main", dynvit="dynvit.infer:main")
    with pytest.raises(SystemExit) as exit_:
        infer.main(["nosuch", "img.png"])
    assert exit_.value.code == 2
    assert "unknown paper 'nosuch'; known: dynvit, yolact" in capsys.readouterr().err


def test_registered_but_not_installed_says_so(monkeypatch, capsys):
    _fake(monkeypatch, ghost="ghostpaper_not_installed.infer:main")
    with pytest.raises(SystemExit) as exit_:
        infer.main(["ghost", "img.png"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "forge-infer ghost is registered" in err and "'ghostpaper_not_installed' is not installed" in err


def test_a_missing_dependency_inside_a_paper_is_not_hidden(monkeypatch, tmp_path):
    (tmp_path / "brokenpaper").mkdir()
    (tmp_path / "brokenpaper" / "__init__.py").write_text("")
    (tmp_path / "brokenpaper" / "infer.py").write_text("import some_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _fake(monkeypatch, broken="brokenpaper.infer:main")
    with pytest.raises(ModuleNotFoundError, match="some_missing_dependency_xyz"):
        infer.main(["broken"])


def test_arguments_reach_the_command(monkeypatch, tmp_path):
    (tmp_path / "echopaper").mkdir()
    (tmp_path / "echopaper" / "__init__.py").write_text("")
    (tmp_path / "echopaper" / "infer.py").write_text("SEEN = []\ndef main(argv):\n    SEEN.append(argv)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _fake(monkeypatch, echo="echopaper.infer:main")
    infer.main(["echo", "a.png", "--out", "b.png"])
    import echopaper.infer

    assert echopaper.infer.SEEN == [["a.png", "--out", "b.png"]]
