"""Open-Vocabulary SAM (Yuan et al., ECCV 2024): SAM2CLIP distillation and CLIP2SAM recognition on a frozen CLIP,
as plain torch modules with the official parameter names. ``docs/ovsam.md`` says what exists and how it is checked.
"""

from ovsam.backbone import CLIPResNetBackbone
from ovsam.checkpoint import load_clip2sam, load_groups, load_sam2clip
from ovsam.fusion import fuse_scores, top_labels
from ovsam.head import FPN, OVSAMHead, classify
from ovsam.model import CLIP2SAM, SAM2CLIPDistill, clip_backbone, preprocess
from ovsam.sam2clip import SAM2CLIP
from ovsam.vocab import merge_vocabularies, read_vocabulary, vocabulary_classifier

__all__ = ["CLIP2SAM", "CLIPResNetBackbone", "FPN", "OVSAMHead", "SAM2CLIP", "SAM2CLIPDistill", "classify",
           "clip_backbone", "fuse_scores", "load_clip2sam", "load_groups", "load_sam2clip", "preprocess",
           "merge_vocabularies", "read_vocabulary", "top_labels", "vocabulary_classifier"]
