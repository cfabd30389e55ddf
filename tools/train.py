"""Thin wrapper: ``python tools/train.py <overrides>`` is ``forge-train <overrides>``."""

from forge.cli.train import main

if __name__ == "__main__":
    main()
