"""Input-file errors of the evaluators (what ``forge-eval`` reports as a one-line message, exit code 2).

Only problems with the user's files belong here: a file that is missing or unreadable, invalid JSON, a missing or
ill-typed key, an id that the ground truth does not know. Anything else (a wrong argument in code, a bug) raises
its ordinary exception and keeps its traceback.
"""

from __future__ import annotations

import os

from forge.data.coco_reader import AnnotationError
from forge.data.crowdhuman_reader import CrowdHumanFormatError

__all__ = ["EvalInputError", "INPUT_ERRORS", "check_input_file"]


class EvalInputError(ValueError):
    """A ground-truth or detection file is unusable; the message names the file and the entry or key at fault."""


#: every exception type that means "bad input file" (the readers' own types plus :class:`EvalInputError`)
INPUT_ERRORS: tuple[type[Exception], ...] = (EvalInputError, AnnotationError, CrowdHumanFormatError)


def check_input_file(path: str | os.PathLike) -> None:
    """Raise :class:`EvalInputError` unless ``path`` is an existing, readable regular file."""
    src = os.fspath(path)
    if not os.path.exists(src):
        raise EvalInputError(f"{src}: file not found")
    if os.path.isdir(src):
        raise EvalInputError(f"{src}: is a directory, not a file")
    if not os.access(src, os.R_OK):
        raise EvalInputError(f"{src}: not readable (permission denied)")
