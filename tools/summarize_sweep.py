"""Thin wrapper: ``python tools/summarize_sweep.py SWEEP_DIR`` is ``forge-summarize SWEEP_DIR``."""

from forge.cli.summarize import main

if __name__ == "__main__":
    main()
