"""Tabular outlier-detection data: loaders for ADBench ``.npz``, ODDS ``.mat`` and CSV, plus the bundled
``breast_cancer`` set. Every loader returns ``(X, y)``: ``X`` float64 ``(n, d)``, ``y`` int ``(n,)`` with
1 = outlier, 0 = inlier (or ``None`` when the file has no labels).

``breast_cancer`` (needs no files): scikit-learn's Wisconsin diagnostic breast-cancer data (569 x 30) with all 357
benign samples as inliers and a fixed random sample of 21 malignant samples as outliers (``numpy.random.default_rng
(seed).choice(212, 21, replace=False)`` over the malignant rows in file order, seed 0), 378 x 30 with 5.56 %
outliers — the ODDS ``wbc`` protocol (same size and ratio; ODDS' own 21 rows are not published as indices, so the
sample differs from ODDS' file).

:class:`OutlierDataset` is what the Hydra ``dataset`` configs instantiate for ``forge.fit``: it has ``name`` and
``load() -> (X, y)``, and reads the bundled set when ``path`` is null, else the file at ``path``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = [
    "load_npz", "load_mat", "load_csv", "load_breast_cancer", "load_outlier_file", "list_adbench",
    "OutlierDataset", "ADBENCH_DIR",
]

# the shared benchmark sets, relative to the repository root (README in that folder)
ADBENCH_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "adbench"


def _check_xy(X: np.ndarray, y: np.ndarray | None, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{source}: X must be a non-empty 2-D array, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{source}: X has {int((~np.isfinite(X)).sum())} NaN/inf values")
    if y is None:
        return X, None
    y = np.asarray(y).ravel()
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{source}: y has {y.shape[0]} labels for {X.shape[0]} rows")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{source}: y must be 0 (inlier) / 1 (outlier), found values {sorted(values)[:10]}")
    return X, y.astype(np.int64)


def load_npz(path: str | Path, x_key: str = "X", y_key: str = "y") -> tuple[np.ndarray, np.ndarray | None]:
    """ADBench layout: arrays ``X`` ``(n, d)`` and ``y`` ``(n,)`` (``y`` optional)."""
    with np.load(path, allow_pickle=False) as f:
        if x_key not in f:
            raise KeyError(f"{path}: no array {x_key!r} (found {sorted(f.files)})")
        return _check_xy(f[x_key], f[y_key] if y_key in f else None, str(path))


def load_mat(path: str | Path, x_key: str = "X", y_key: str = "y") -> tuple[np.ndarray, np.ndarray | None]:
    """ODDS layout: MATLAB file with ``X`` ``(n, d)`` and ``y`` ``(n, 1)``. v7.3 (HDF5) files are not supported."""
    from scipy.io import loadmat

    try:
        m = loadmat(path)
    except NotImplementedError as e:  # MATLAB v7.3 = HDF5
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save with -v7") from e
    if x_key not in m:
        raise KeyError(f"{path}: no variable {x_key!r} (found {sorted(k for k in m if not k.startswith('__'))})")
    return _check_xy(m[x_key], m.get(y_key), str(path))


def load_csv(path: str | Path, label_column: str | int | None = "y", delimiter: str = ",",
             header: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Numeric CSV. ``label_column``: a column name (needs a header), an index (negative counts from the end) or
    ``None`` for no labels. ``header=None`` detects a header (first row not all numeric)."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: empty CSV")

    def numeric(row: list[str]) -> bool:
        try:
            [float(c) for c in row]
            return True
        except ValueError:
            return False

    has_header = (not numeric(rows[0])) if header is None else header
    names = [c.strip() for c in rows[0]] if has_header else None
    body = rows[1:] if has_header else rows
    try:
        data = np.array([[float(c) for c in r] for r in body], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: non-numeric value in the data rows ({e})") from e
    if data.ndim != 2:
        raise ValueError(f"{path}: rows have different lengths")
    if label_column is None:
        return _check_xy(data, None, str(path))
    if isinstance(label_column, str):
        if names is None:
            if label_column == "y":  # default with a header-less file: no labels
                return _check_xy(data, None, str(path))
            raise ValueError(f"{path}: label_column={label_column!r} needs a header row")
        if label_column not in names:
            if label_column == "y":
                return _check_xy(data, None, str(path))
            raise KeyError(f"{path}: no column {label_column!r} (columns {names})")
        idx = names.index(label_column)
    else:
        idx = int(label_column) % data.shape[1]
    y = data[:, idx]
    X = np.delete(data, idx, axis=1)
    return _check_xy(X, y, str(path))


def load_outlier_file(path: str | Path, **kwargs) -> tuple[np.ndarray, np.ndarray | None]:
    """Dispatch on the suffix: ``.npz`` / ``.mat`` / ``.csv`` (``.txt``/``.tsv`` as CSV)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, **kwargs)
    if suffix == ".mat":
        return load_mat(path, **kwargs)
    if suffix in (".csv", ".txt", ".tsv"):
        if suffix == ".tsv":
            kwargs.setdefault("delimiter", "\t")
        return load_csv(path, **kwargs)
    raise ValueError(f"{path}: unsupported suffix {suffix!r} (use .npz, .mat or .csv)")


def load_breast_cancer(n_outliers: int = 21, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """357 benign (inlier) + ``n_outliers`` malignant (outlier) rows of scikit-learn's breast-cancer data.

    Inliers first, then outliers, each in file order. In scikit-learn's target 0 = malignant, 1 = benign.
    """
    from sklearn.datasets import load_breast_cancer as _load

    data = _load()
    X, t = data.data.astype(np.float64), data.target
    benign = np.flatnonzero(t == 1)
    malignant = np.flatnonzero(t == 0)
    if not 0 < n_outliers <= malignant.size:
        raise ValueError(f"n_outliers must be in [1, {malignant.size}], got {n_outliers}")
    pick = np.sort(np.random.default_rng(seed).choice(malignant.size, n_outliers, replace=False))
    idx = np.concatenate([benign, malignant[pick]])
    y = np.concatenate([np.zeros(benign.size, np.int64), np.ones(n_outliers, np.int64)])
    return X[idx], y


def list_adbench(root: str | Path | None = None) -> list[Path]:
    """Sorted ``*.npz`` files of the shared ADBench folder (empty list if the folder is absent)."""
    root = Path(root) if root is not None else ADBENCH_DIR
    return sorted(root.resolve().glob("*.npz")) if root.exists() else []


class OutlierDataset:
    """Dataset object for ``forge.fit`` (``forge/configs/dataset/anomaly/*.yaml``): ``load() -> (X, y)``.

    ``path=None`` gives the bundled ``breast_cancer`` set (``n_outliers``, ``seed`` as in
    :func:`load_breast_cancer`); otherwise the ``.npz`` / ``.mat`` / ``.csv`` file at ``path`` (``x_key``/``y_key``
    for npz/mat, ``label_column`` for CSV). ``name`` defaults to ``breast_cancer`` or the file's stem.
    """

    def __init__(self, path: str | None = None, name: str | None = None, n_outliers: int = 21, seed: int = 0,
                 label_column: str | int | None = "y", x_key: str = "X", y_key: str = "y"):
        self.path = None if path in (None, "") else str(path)
        self.name = name or ("breast_cancer" if self.path is None else Path(self.path).stem)
        self.n_outliers = n_outliers
        self.seed = seed
        self.label_column = label_column
        self.x_key = x_key
        self.y_key = y_key

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.path is None:
            return load_breast_cancer(self.n_outliers, self.seed)
        suffix = Path(self.path).suffix.lower()
        if suffix in (".npz", ".mat"):
            return load_outlier_file(self.path, x_key=self.x_key, y_key=self.y_key)
        return load_outlier_file(self.path, label_column=self.label_column)
