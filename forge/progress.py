"""Progress bars for long loops: a tqdm bar on a terminal, silence in logs and CI.

A bar is drawn only when stderr is a TTY and the ``CI`` environment variable is unset (or empty); otherwise nothing
is written, except the optional one-line summary given by ``log``. tqdm is imported only when a bar is drawn; this
module never imports torch.

Usage::

    for item in progress(items, desc="render", unit="img"):
        ...
    with Progress(total=n_images, desc="crowdhuman match", unit="img") as bar:
        bar.update(len(chunk))
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["Progress", "progress", "progress_enabled"]

T = TypeVar("T")


def progress_enabled(stream: Any = None) -> bool:
    """True when a bar should be drawn: ``stream`` (default stderr) is a TTY and ``CI`` is not set."""
    if os.environ.get("CI"):
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


class Progress:
    """A progress bar of ``total`` steps (tqdm on a terminal, nothing otherwise); use as a context manager.

    Args:
        total: number of steps (None: unknown).
        desc: label in front of the bar.
        unit: name of one step.
        log: called once at the end with ``"{desc}: {n} {unit} in {s:.1f} s"`` when no bar is drawn (e.g.
            ``logger.info``); None stays silent.
    """

    def __init__(
        self, total: int | None = None, desc: str = "", unit: str = "it", log: Callable[[str], Any] | None = None
    ) -> None:
        self.desc, self.unit, self.log = desc, unit, log
        self.n = 0
        self._start = time.perf_counter()
        self._bar = None
        if progress_enabled():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def stage(self, text: str) -> None:
        """Show what is being done now (the bar's postfix)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.log is not None:
            self.log(f"{self.desc}: {self.n} {self.unit} in {time.perf_counter() - self._start:.1f} s")
            self.log = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    log: Callable[[str], Any] | None = None,
) -> Iterator[T]:
    """Yield the items of ``iterable`` while advancing a :class:`Progress` bar (``total`` defaults to ``len``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total=total, desc=desc, unit=unit, log=log) as bar:
        for item in iterable:
            yield item
            bar.update()
