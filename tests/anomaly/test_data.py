"""Loaders (npz / mat / csv written here), the bundled breast_cancer set and the shared ADBench folder."""

import numpy as np
import pytest
from scipy.io import savemat

from anomaly.data import (
    ADBENCH_DIR,
    OutlierDataset,
    list_adbench,
    load_breast_cancer,
    load_csv,
    load_mat,
    load_npz,
    load_outlier_file,
)

X = np.arange(12, dtype=float).reshape(4, 3)
Y = np.array([0, 1, 0, 0])


def test_npz_roundtrip(tmp_path):
    np.savez(tmp_path / "a.npz", X=X, y=Y)
    x, y = load_npz(tmp_path / "a.npz")
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    np.savez(tmp_path / "nolabel.npz", X=X)
    assert load_npz(tmp_path / "nolabel.npz")[1] is None
    np.savez(tmp_path / "bad.npz", data=X)
    with pytest.raises(KeyError, match="'X'"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "badlab.npz", X=X, y=np.array([0, 2, 0, 0]))
    with pytest.raises(ValueError, match="0 \\(inlier\\)"):
        load_npz(tmp_path / "badlab.npz")


def test_mat_odds_layout(tmp_path):
    savemat(tmp_path / "b.mat", {"X": X, "y": Y[:, None].astype(float)})
    x, y = load_mat(tmp_path / "b.mat")
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    assert y.dtype == np.int64


def test_csv_variants(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("f1,f2,y,f3\n" + "\n".join(f"{r[0]},{r[1]},{lab},{r[2]}" for r, lab in zip(X, Y)) + "\n")
    x, y = load_csv(p)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    q = tmp_path / "d.csv"  # no header, label last
    q.write_text("\n".join(",".join(str(v) for v in [*r, lab]) for r, lab in zip(X, Y)))
    x, y = load_csv(q, label_column=-1)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    x, y = load_csv(q)  # header-less with the default label name: unlabeled
    assert y is None and x.shape == (4, 4)
    with pytest.raises(KeyError, match="label"):
        load_csv(p, label_column="label")
    (tmp_path / "e.csv").write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match="non-numeric"):
        load_csv(tmp_path / "e.csv")


def test_dispatch_and_dataset_object(tmp_path):
    np.savez(tmp_path / "a.npz", X=X, y=Y)
    ds = OutlierDataset(path=str(tmp_path / "a.npz"))
    assert ds.name == "a"
    np.testing.assert_array_equal(ds.load()[0], X)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_outlier_file(tmp_path / "missing.npz")
    (tmp_path / "f.json").write_text("{}")
    with pytest.raises(ValueError, match="unsupported"):
        load_outlier_file(tmp_path / "f.json")


def test_breast_cancer_protocol():
    X, y = load_breast_cancer()
    assert X.shape == (378, 30) and y.sum() == 21 and (y == 0).sum() == 357
    X2, y2 = OutlierDataset().load()
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert OutlierDataset().name == "breast_cancer"
    X3, _ = load_breast_cancer(seed=1)
    assert not np.array_equal(X, X3) and np.array_equal(X[:357], X3[:357])  # only the outlier sample changes


@pytest.mark.skipif(not ADBENCH_DIR.exists(), reason=f"shared ADBench folder {ADBENCH_DIR} is absent")
def test_shared_adbench_sets_load():
    files = list_adbench()
    assert len(files) >= 1
    for f in files[:5]:
        x, y = load_npz(f)
        assert x.shape[0] == y.shape[0] and 0 < y.sum() < len(y)
