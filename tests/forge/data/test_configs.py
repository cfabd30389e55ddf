"""Who owns what in the configs: dataset configs are paper-neutral (paths, split, annotation handling), each paper's
augmentation is a ``pipeline`` config, the input normalisation is the model's."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from forge.models import ImagePreprocessor
from tests.forge.helpers import compose_cfg

CONFIGS = Path(__file__).resolve().parents[3] / "forge" / "configs"
# keys that belong to a paper's pipeline or to its model, never to a dataset config
NOT_DATASET = {"mean", "std", "to_bgr", "channel_order", "min_box_size", "expand_fill", "short_side", "max_long_side",
               "train_pipeline", "val_pipeline", "test_pipeline"}


def _keys(node) -> set[str]:
    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            out.add(k)
            out |= _keys(v)
    elif isinstance(node, list):
        for v in node:
            out |= _keys(v)
    return out


@pytest.mark.parametrize("path", sorted((CONFIGS / "dataset").glob("*.yaml")), ids=lambda p: p.stem)
def test_dataset_configs_are_paper_neutral(path):
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert not _keys(cfg) & NOT_DATASET, (path.name, _keys(cfg) & NOT_DATASET)
    if path.stem != "digits":  # the in-memory digits set is built at a size; every file dataset has none
        assert "img_size" not in cfg, path.name
    text = path.read_text()
    assert "forge.data.transforms" not in text and "create_transform" not in text, path.name


@pytest.mark.parametrize("path", sorted((CONFIGS / "pipeline").glob("*.yaml")), ids=lambda p: p.stem)
def test_pipelines_never_normalise(path):
    text = path.read_text()
    assert "Normalize" not in text.replace("normalize: false", ""), path.name
    cfg = OmegaConf.load(path)
    if "defaults" in cfg:  # a pipeline that extends another: check what it composes to
        cfg = compose_cfg([f"pipeline={path.stem}"]).pipeline
        assert cfg.name == path.stem, path.name
    assert {"name", "train", "val"} <= set(cfg), path.name


@pytest.mark.parametrize("pipeline", ["yolact_ssd", "yolact_shapes", "crowddet"])
def test_each_detection_pipeline_builds(pipeline):
    cfg = compose_cfg(["dataset=shapes", f"pipeline={pipeline}"])
    for split in ("train", "val"):
        steps = instantiate(cfg.pipeline[split], _convert_="partial")
        assert steps and all(callable(t) for t in steps)


@pytest.mark.parametrize("experiment,mean,std", [
    ("yolact/r50_550_coco", (123.68, 116.78, 103.94), (58.40, 57.12, 57.38)),
    ("yolact/darknet53_550_coco", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),  # DarkNet sees RGB / 255: its model's
    ("yolact/shapes", (123.68, 116.78, 103.94), (58.40, 57.12, 57.38)),
])
def test_the_model_owns_the_normalisation(experiment, mean, std):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert "mean" not in cfg.dataset and "std" not in cfg.dataset
    pre = instantiate(cfg.model.data_preprocessor)
    assert isinstance(pre, ImagePreprocessor) and not pre.rgb_to_bgr
    assert pre.mean.flatten().tolist() == pytest.approx(mean) and pre.std.flatten().tolist() == pytest.approx(std)
    # YOLACT's zoom-out fills with its mean colour in pixel space, DarkNet included: a pipeline value
    if "coco" in experiment:
        assert list(cfg.pipeline.expand_fill) == pytest.approx([123.68, 116.78, 103.94])


def test_a_dataset_without_a_pipeline_names_the_missing_key():
    cfg = compose_cfg(["dataset=shapes"])
    with pytest.raises(Exception, match=r"pipeline\.train"):
        OmegaConf.to_container(cfg.dataset, resolve=True)
