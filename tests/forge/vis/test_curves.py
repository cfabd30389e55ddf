import json
import os

import pytest

from forge.vis.curves import plot_scalars, read_scalars


def _write(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_read_scalars_groups_by_name_and_skips_timing(tmp_path):
    path = tmp_path / "scalars.json"
    _write(path, [
        {"step": 10, "loss": 2.0, "lr": 0.1, "time": 0.5, "data_time": 0.01},
        {"step": 20, "loss": 1.5, "lr": 0.05, "time": 0.4, "data_time": 0.01},
        {"step": 20, "coco/bbox_mAP": 0.3},
    ])
    series = read_scalars(str(path))
    assert series == {"loss": [(10, 2.0), (20, 1.5)], "lr": [(10, 0.1), (20, 0.05)], "coco/bbox_mAP": [(20, 0.3)]}


def test_read_scalars_names_the_bad_line(tmp_path):
    path = tmp_path / "scalars.json"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": \n')
    with pytest.raises(ValueError, match=r"scalars\.json:2: not valid JSON"):
        read_scalars(str(path))


def test_plot_scalars_splits_training_and_validation_and_drops_base_lr(tmp_path, monkeypatch):
    path = tmp_path / "scalars.json"
    _write(path, [{"step": s, "loss": 1.0 / s, "base_lr": 0.1, "lr": 0.1 / s} for s in range(1, 5)]
           + [{"step": 4, "coco/segm_mAP_50": 0.6}])
    titles = []
    import matplotlib.axes

    orig = matplotlib.axes.Axes.set_title

    def record_title(ax, title, *args, **kwargs):
        titles.append(title)
        return orig(ax, title, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", record_title)
    written = plot_scalars(str(path), str(tmp_path / "plots"))
    assert [os.path.basename(p) for p in written] == ["training.png", "validation.png"]
    assert all(os.path.getsize(p) > 0 for p in written)
    assert titles == ["loss", "lr", "coco/segm_mAP_50"]
