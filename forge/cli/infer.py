"""``forge-infer <paper> IMAGE... --checkpoint FILE --out PNG_OR_DIR [--model NAME]``.

The first argument names a paper command registered in the ``forge.infer`` entry-point group (a paper package
declares ``[project.entry-points."forge.infer"] <name> = "<package>.infer:main"``); the rest is handed to that
``main(argv)``, which knows how to rebuild its model (from a forge checkpoint with its saved ``config.yaml``, or from
an official release) and how to draw its predictions.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points

GROUP = "forge.infer"


def commands() -> dict[str, EntryPoint]:
    """The registered ``forge-infer`` commands, by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    known = commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\npapers: {', '.join(sorted(known)) or '(none registered)'}")
        sys.exit(0 if argv else 2)
    paper, rest = argv[0], argv[1:]
    if paper not in known:
        print(f"error: unknown paper {paper!r}; known: {', '.join(sorted(known)) or '(none registered)'} "
              f"(entry-point group {GROUP!r})", file=sys.stderr)
        sys.exit(2)
    ep = known[paper]
    try:
        command = ep.load()
    except ModuleNotFoundError as err:
        # only the paper's own package missing is "not installed"; a missing dependency deeper down is a real error
        top = ep.value.split(":", 1)[0]
        if err.name and (top == err.name or top.startswith(err.name + ".")):
            print(f"error: forge-infer {paper} is registered ({ep.value}) but its package {err.name!r} is not "
                  "installed in this environment", file=sys.stderr)
            sys.exit(2)
        raise
    command(rest)


if __name__ == "__main__":
    main()
