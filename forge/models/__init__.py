"""Generic model wrappers shared by papers (paper-specific networks live in their packages)."""

from .classifier import ClsDataPreprocessor, ImageClassifier
from .losses import CrossEntropyLoss

__all__ = ["ClsDataPreprocessor", "CrossEntropyLoss", "ImageClassifier"]
