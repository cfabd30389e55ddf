"""Script-owned doc sections: only the text between the markers changes."""

from __future__ import annotations

import pytest

from forge.docsection import machine_line, markers, replace_section


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
