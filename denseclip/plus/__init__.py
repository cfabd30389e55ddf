"""MaskCLIP+ (paper Sec. 3.3): DeepLab segmenters trained on a frozen MaskCLIP's pseudo-labels, then self-trained."""

from .heads import ASPPv2, DeepLabV3PlusHead, DilatedResNet, TextClassifier
from .model import MaskCLIPPlus, assign_labels, predict_at_original

__all__ = ["ASPPv2", "DeepLabV3PlusHead", "DilatedResNet", "MaskCLIPPlus", "TextClassifier", "assign_labels",
           "predict_at_original"]
