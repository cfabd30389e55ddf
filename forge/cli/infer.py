"""``forge-infer <paper> IMAGE... --checkpoint FILE --out PNG_OR_DIR [--model NAME]``.

The first argument names the paper package; the rest is handed to that package's ``infer.main(argv)``, which knows
how to rebuild its model (from a forge checkpoint with its saved ``config.yaml``, or from an official release) and
how to draw its predictions.
"""

from __future__ import annotations

import importlib
import sys

PAPERS = ("yolact", "dynvit", "edgesam", "ovsam", "denseclip", "nohnms")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\npapers: {', '.join(PAPERS)}")
        sys.exit(0 if argv else 2)
    paper, rest = argv[0], argv[1:]
    if paper not in PAPERS:
        print(f"error: unknown paper {paper!r}; choose one of {', '.join(PAPERS)}", file=sys.stderr)
        sys.exit(2)
    try:
        module = importlib.import_module(f"{paper}.infer")
    except ModuleNotFoundError as err:
        if err.name in (paper, f"{paper}.infer"):
            print(f"error: forge-infer {paper} is not available in this installation ({err})", file=sys.stderr)
            sys.exit(2)
        raise
    module.main(rest)


if __name__ == "__main__":
    main()
