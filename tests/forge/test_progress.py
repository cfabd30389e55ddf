"""forge.progress: a bar on a terminal only; silent (or one log line) when stderr is not a TTY or CI is set."""

import io
import subprocess
import sys

import pytest

from forge.progress import Progress, progress, progress_enabled


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def fake_stderr(monkeypatch):
    def use(stream):
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    return use


def test_silent_when_not_a_tty(fake_stderr, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    err = fake_stderr(io.StringIO())
    assert not progress_enabled()
    assert list(progress(range(5), desc="work")) == [0, 1, 2, 3, 4]
    with Progress(total=3, desc="steps") as bar:
        bar.stage("reading")
        bar.update(3)
    assert err.getvalue() == ""


def test_silent_on_a_terminal_in_ci(fake_stderr, monkeypatch):
    monkeypatch.setenv("CI", "true")
    err = fake_stderr(_Terminal())
    assert not progress_enabled()
    assert sum(progress(range(4), desc="work")) == 6
    assert err.getvalue() == ""


def test_bar_on_a_terminal(fake_stderr, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    err = fake_stderr(_Terminal())
    assert progress_enabled()
    assert list(progress([1, 2, 3], desc="rendering", unit="img")) == [1, 2, 3]
    text = err.getvalue()
    assert "rendering" in text and "0/3" in text  # tqdm redraws at most every 0.1 s; leave=False clears it


def test_one_log_line_at_the_end_when_not_a_tty(fake_stderr, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    err = fake_stderr(io.StringIO())
    lines: list[str] = []
    for _ in progress(range(7), desc="shapes train", unit="img", log=lines.append):
        assert lines == []  # nothing while running
    assert len(lines) == 1 and lines[0].startswith("shapes train: 7 img in ") and lines[0].endswith(" s")
    assert err.getvalue() == ""


def test_importing_progress_does_not_import_torch_or_tqdm():
    code = "import sys, forge.progress; print(sorted(m for m in ('torch', 'tqdm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_make_shapes_bar_only_on_a_terminal(fake_stderr, monkeypatch, tmp_path, capsys):
    from forge.cli.make_shapes import main

    monkeypatch.delenv("CI", raising=False)
    assert main([str(tmp_path / "a"), "--train", "2", "--val", "1", "--size", "32"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "train: 2 images" in captured.out
    err = fake_stderr(_Terminal())
    assert main([str(tmp_path / "b"), "--train", "2", "--val", "1", "--size", "32"]) == 0
    assert "shapes train" in err.getvalue() and "shapes val" in err.getvalue()
