"""Script-owned doc sections: only the text between the markers changes."""

from __future__ import annotations

import pytest

from forge.docsection import command_line, machine_line, markers, mean_std, publish_section, replace_section


def test_replaces_only_between_markers(tmp_path):
    begin, end = markers("t")
    doc = tmp_path / "d.md"
    doc.write_text(f"# Title\nkept above\n{begin}\nold table\n{end}\nkept below\n")
    replace_section(str(doc), "t", "new table\n")
    assert doc.read_text() == f"# Title\nkept above\n{begin}\nnew table\n{end}\nkept below\n"
    replace_section(str(doc), "t", "newer")  # idempotent shape: one pair of markers
    assert doc.read_text().count(begin) == 1 and "newer" in doc.read_text() and "new table" not in doc.read_text()


def test_missing_section_is_named_or_appended(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("# Title\n")
    with pytest.raises(ValueError, match=r"d\.md has no section 'x': add the lines <!-- x:begin -->"):
        replace_section(str(doc), "x", "body")
    replace_section(str(doc), "x", "body", title="## X")
    assert doc.read_text() == "# Title\n\n## X\n\n<!-- x:begin -->\nbody\n<!-- x:end -->\n"


def test_duplicate_markers_fail(tmp_path):
    begin, end = markers("t")
    doc = tmp_path / "d.md"
    doc.write_text(f"{begin}\na\n{end}\n{begin}\nb\n{end}\n")
    with pytest.raises(ValueError, match="more than once"):
        replace_section(str(doc), "t", "c")


def test_machine_line_has_a_date():
    import datetime

    assert machine_line().endswith(datetime.date.today().isoformat())


def test_mean_std_cells():
    assert mean_std([0.5, 0.7]) == "0.600 ± 0.100"  # population std: sqrt(((0.1)^2 + (0.1)^2) / 2)
    assert mean_std([1.0, 2.0, 6.0], ".2f") == "3.00 ± 2.16"  # sqrt(14 / 3)
    assert mean_std([0.25]) == "0.250"  # one seed: no spread to show


def test_command_line_and_publish(tmp_path, capsys):
    assert command_line("benchmarks/x.py", []) == "Command: `python benchmarks/x.py`"
    assert command_line("benchmarks/x.py", ["--seeds", "2"]) == "Command: `python benchmarks/x.py --seeds 2`"
    begin, end = markers("s")
    doc = tmp_path / "d.md"
    doc.write_text(f"kept\n{begin}\nold\n{end}\n")
    publish_section("", "s", "table")  # --doc '': printed only
    assert capsys.readouterr().out == "\ntable\n" and "old" in doc.read_text()
    publish_section(str(doc), "s", "table")
    assert doc.read_text() == f"kept\n{begin}\ntable\n{end}\n"
    assert capsys.readouterr().out == f"\ntable\nwrote section 's' of {doc}\n"
    publish_section(str(tmp_path / "new.md"), "n", "body", title="## N")
    assert (tmp_path / "new.md").read_text() == "## N\n\n<!-- n:begin -->\nbody\n<!-- n:end -->\n"
