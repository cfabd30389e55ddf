"""Settings of the six released YOLACT / YOLACT++ models (the original's ``data/config.py``, re-expressed as
constructor arguments of :class:`yolact.model.Yolact`), and the COCO class list they were trained on.

``yolact.convert.build_official(name)`` returns the network with those settings;
``forge/configs/model/yolact/<name>.yaml`` spell the same arguments for Hydra. Official checkpoint files:
``<name>_54_800000.pth`` (``yolact_im700_54_800000.pth`` ...).
"""

from __future__ import annotations

from typing import Any

BASE_SCALES = (24, 48, 96, 192, 384)

_YOLACT = dict(
    backbone="resnet101", num_classes=80, max_size=550, anchor_scales=BASE_SCALES, scales_per_octave=1,
    aspect_ratios=(1.0, 0.5, 2.0), square_anchors=True, dcn_layers=(0, 0, 0, 0), dcn_interval=1, use_maskiou=False,
)
_PLUS = dict(_YOLACT, square_anchors=False, scales_per_octave=3, use_maskiou=True)

OFFICIAL_MODELS: dict[str, dict[str, Any]] = {
    "yolact_base": dict(_YOLACT),
    "yolact_resnet50": dict(_YOLACT, backbone="resnet50"),
    "yolact_darknet53": dict(_YOLACT, backbone="darknet53"),
    # scales are int(s / 550 * 700) as in the original
    "yolact_im700": dict(_YOLACT, max_size=700, anchor_scales=tuple(int(s / 550 * 700) for s in BASE_SCALES)),
    "yolact_plus_base": dict(_PLUS, dcn_layers=(0, 4, 23, 3), dcn_interval=3),
    "yolact_plus_resnet50": dict(_PLUS, backbone="resnet50", dcn_layers=(0, 4, 6, 3), dcn_interval=1),
}

# training-only differences between the official configs (loss group)
MASKS_TO_TRAIN = {"yolact_im700": 300}

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
# contiguous label -> COCO category id (ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are unused by COCO)
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))


def official_kwargs(name: str) -> dict[str, Any]:
    """Constructor arguments of an official model; raises with the known names otherwise."""
    if name not in OFFICIAL_MODELS:
        raise KeyError(f"unknown YOLACT model {name!r}; known: {', '.join(OFFICIAL_MODELS)}")
    return dict(OFFICIAL_MODELS[name])
