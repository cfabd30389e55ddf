"""Script-owned sections of the Markdown docs: one source per figure.

A benchmark or demo script that produces a table or a figure writes it into the docs itself, between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``; the text around the markers is the humans' and is never touched.
Pages that quote a figure link to its section instead of copying it.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of section ``name``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def machine_line() -> str:
    """``"<cpu>, N logical cores (load L), python X, torch Y (if imported), YYYY-MM-DD"``: where and when a figure
    was made; the 1-minute load average says whether the machine was shared while it ran."""
    import sys

    cores = f"{os.cpu_count()} logical cores"
    if hasattr(os, "getloadavg"):
        cores += f" (load average {os.getloadavg()[0]:.1f})"
    parts = [platform.processor() or platform.machine(), cores, f"python {platform.python_version()}"]
    torch = sys.modules.get("torch")
    if torch is not None:
        parts.append(f"torch {torch.__version__}")
    parts.append(datetime.date.today().isoformat())
    return ", ".join(parts)


def replace_section(path: str, name: str, body: str, title: str | None = None) -> None:
    """Write ``body`` between the markers of section ``name`` in the Markdown file ``path``.

    Without the markers: with ``title`` the section is appended under that heading; without it the call fails,
    naming the file and the marker to add (a script must not guess where its section goes).
    """
    begin, end = markers(name)
    text = open(path, encoding="utf-8").read() if os.path.isfile(path) else ""
    if text.count(begin) > 1 or text.count(end) > 1:
        raise ValueError(f"{path}: section {name!r} appears more than once; keep one {begin} ... {end} pair")
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        if end not in rest:
            raise ValueError(f"{path}: {end} comes before {begin}")
        _, tail = rest.split(end, 1)
    elif title is not None:
        head, tail = text.rstrip("\n") + ("\n\n" if text else "") + f"{title}\n\n", "\n"
    else:
        raise ValueError(f"{path} has no section {name!r}: add the lines {begin} and {end} where it belongs")
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + begin + "\n" + body.strip("\n") + "\n" + end + tail)


def mean_std(values: Sequence[float], fmt: str = ".3f") -> str:
    """A table cell: ``"mean ± std"`` (population std, over seeds) in ``fmt``, or the single value alone."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    return f"{v.mean():{fmt}} ± {v.std():{fmt}}" if v.size > 1 else f"{v[0]:{fmt}}"


def command_line(script: str, argv: Sequence[str]) -> str:
    """``Command: `python SCRIPT ARG...` ``, the line that closes a section so that it can be made again."""
    return f"Command: `python {script}{''.join(' ' + a for a in argv)}`"


def publish_section(path: str, name: str, body: str, title: str | None = None) -> None:
    """Print ``body``; unless ``path`` is empty (a script's ``--doc ''``), also write it as section ``name`` of
    ``path`` (:func:`replace_section`) and say so."""
    print("\n" + body)
    if path:
        replace_section(path, name, body, title=title)
        print(f"wrote section {name!r} of {path}")
