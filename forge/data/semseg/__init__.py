"""Semantic-segmentation data: benchmark datasets (VOC-20/21, PASCAL Context 59/60, COCO-Stuff 171), the item
record and its collate function, and the synthetic coloured-shapes semantic split (:mod:`.synthetic`)."""

from .classes import (
    CLASS_SETS,
    COCO_STUFF_CLASSES,
    CONTEXT59_CLASSES,
    CONTEXT60_CLASSES,
    VOC20_CLASSES,
    VOC_CLASSES,
    resolve_classes,
)
from .datasets import CocoStuffDataset, LabelError, PascalContextDataset, SemSegDataset, VOCSegDataset, read_label_map
from .sample import IGNORE_INDEX, SegSample, collate_semseg, pack_seg_sample

__all__ = [
    "CLASS_SETS", "resolve_classes", "COCO_STUFF_CLASSES", "CONTEXT59_CLASSES", "CONTEXT60_CLASSES",
    "VOC20_CLASSES", "VOC_CLASSES",
    "CocoStuffDataset", "LabelError", "PascalContextDataset", "SemSegDataset", "VOCSegDataset", "read_label_map",
    "IGNORE_INDEX", "SegSample", "collate_semseg", "pack_seg_sample",
]
