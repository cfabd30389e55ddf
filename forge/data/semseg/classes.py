"""Class lists of the semantic-segmentation benchmarks, in the label order of their usual converted annotations
(mmsegmentation's ``PascalVOCDataset``, ``PascalContextDataset``/``PascalContextDataset59`` and
``COCOStuffDataset``, which MaskCLIP's official code uses unchanged)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["VOC_CLASSES", "VOC20_CLASSES", "CONTEXT60_CLASSES", "CONTEXT59_CLASSES", "COCO_STUFF_CLASSES",
           "CLASS_SETS", "resolve_classes"]

# PASCAL VOC 2012: PNG value 0 = background, 1..20 the objects, 255 = boundary/void
VOC20_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_CLASSES: tuple[str, ...] = ("background", *VOC20_CLASSES)

# PASCAL Context (the 59 most frequent classes; PNG value 0 = everything else / background)
CONTEXT59_CLASSES: tuple[str, ...] = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)
CONTEXT60_CLASSES: tuple[str, ...] = ("background", *CONTEXT59_CLASSES)

# COCO-Stuff 164k, the 171 train ids 0..170 of the *_labelTrainIds.png files (80 things, then 91 stuff)
COCO_STUFF_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "banner",
    "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower",
    "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves",
    "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement",
    "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock",
    "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)
assert len(VOC20_CLASSES) == 20 and len(CONTEXT59_CLASSES) == 59 and len(COCO_STUFF_CLASSES) == 171

#: the lists by name (configs say ``classes: voc20``)
CLASS_SETS: dict[str, tuple[str, ...]] = {
    "voc20": VOC20_CLASSES, "voc21": VOC_CLASSES, "context59": CONTEXT59_CLASSES, "context60": CONTEXT60_CLASSES,
    "coco_stuff": COCO_STUFF_CLASSES,
}


def resolve_classes(spec: str | Sequence[str]) -> list[str]:
    """A set name of :data:`CLASS_SETS` or an explicit list -> the class names."""
    if isinstance(spec, str):
        if spec not in CLASS_SETS:
            raise ValueError(f"unknown class set {spec!r}; choose one of {', '.join(CLASS_SETS)} or give a list")
        return list(CLASS_SETS[spec])
    names = [str(n) for n in spec]
    if not names:
        raise ValueError("empty class list")
    return names
