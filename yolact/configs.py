"""The six released YOLACT / YOLACT++ models, read from their Hydra configs, and the COCO class list they were
trained on, read from the COCO dataset config: one source each.

``forge/configs/model/yolact/<name>.yaml`` spell the original's ``data/config.py`` as constructor arguments of
:class:`yolact.model.Yolact`; :data:`OFFICIAL_MODELS` holds the architecture arguments of those files (what a
released checkpoint needs to be rebuilt; test-time settings keep the constructor's defaults, which equal the files').
``yolact.convert.build_official(name)`` returns the network. Official checkpoint files: ``<name>_54_800000.pth``
(``yolact_im700_54_800000.pth`` ...). Classes: ``forge/configs/dataset/coco.yaml`` ``classes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

import forge

CONFIG_DIR = Path(forge.__file__).resolve().parent / "configs"  # shipped inside the package
MODEL_CONFIG_DIR = CONFIG_DIR / "model" / "yolact"
COCO_CONFIG = CONFIG_DIR / "dataset" / "coco.yaml"

# the released models: the names of dbolya/yolact's configs and checkpoint files
OFFICIAL_NAMES = ("yolact_base", "yolact_resnet50", "yolact_darknet53", "yolact_im700", "yolact_plus_base",
                  "yolact_plus_resnet50")
# constructor arguments that define the architecture (and, for max_size and the anchors, the released weights' input)
ARCHITECTURE_KEYS = ("backbone", "max_size", "anchor_scales", "scales_per_octave", "aspect_ratios", "square_anchors",
                     "dcn_layers", "dcn_interval", "use_maskiou", "num_prototypes", "fpn_channels", "semantic_head")


def _literal(cfg: DictConfig, key: str, path: Path) -> Any:
    if key not in cfg:
        raise KeyError(f"{path}: no {key!r}")
    if OmegaConf.is_interpolation(cfg, key):
        raise ValueError(f"{path}: {key} = {OmegaConf.to_container(cfg, resolve=False)[key]!r} is an interpolation; "
                         f"a released model's {key} must be a literal value (the checkpoint needs exactly it)")
    value = cfg[key]
    return tuple(value) if isinstance(value, ListConfig) else value


def _coco_classes() -> tuple[str, ...]:
    cfg = OmegaConf.load(COCO_CONFIG)
    classes = tuple(_literal(cfg, "classes", COCO_CONFIG))
    if _literal(cfg, "num_classes", COCO_CONFIG) != len(classes):
        raise ValueError(f"{COCO_CONFIG}: num_classes = {cfg.num_classes} but {len(classes)} classes")
    return classes


def _official_models() -> Mapping[str, Mapping[str, Any]]:
    models = {}
    for name in OFFICIAL_NAMES:
        path = MODEL_CONFIG_DIR / f"{name}.yaml"
        cfg = OmegaConf.load(path)
        kwargs = {key: _literal(cfg, key, path) for key in ARCHITECTURE_KEYS}
        models[name] = MappingProxyType(dict(kwargs, num_classes=len(COCO_CLASSES)))  # trained on COCO
    return MappingProxyType(models)


COCO_CLASSES: tuple[str, ...] = _coco_classes()
# contiguous label -> COCO category id (ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are unused by COCO); the dataset
# itself takes the ids from its annotation file, so this is only for writing results of the released models
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
OFFICIAL_MODELS: Mapping[str, Mapping[str, Any]] = _official_models()


def official_kwargs(name: str) -> dict[str, Any]:
    """Constructor arguments of an official model (a fresh dict); raises with the known names otherwise."""
    if name not in OFFICIAL_MODELS:
        raise KeyError(f"unknown YOLACT model {name!r}; known: {', '.join(OFFICIAL_MODELS)}")
    return dict(OFFICIAL_MODELS[name])
