"""Thin wrapper: ``python tools/test.py <overrides>`` is ``forge-test <overrides>``."""

from forge.cli.test import main

if __name__ == "__main__":
    main()
