"""Class lists given by name or by label index (open-vocabulary splits, class filters)."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def class_indices(classes: Sequence[int | str], names: Sequence[str] | None,
                  unknown: Callable[[str], str]) -> list[int]:
    """Label indices of ``classes``, each a label index or a name looked up in ``names`` (label order).

    A name not in ``names`` (or any name when ``names`` is None) raises ``ValueError(unknown(name))``, so each
    caller keeps a message naming itself and where the names come from.
    """
    out = []
    for c in classes:
        if isinstance(c, str):
            if names is None or c not in names:
                raise ValueError(unknown(c))
            out.append(list(names).index(c))
        else:
            out.append(int(c))
    return out
