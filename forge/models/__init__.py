"""Generic model wrappers shared by papers (paper-specific networks live in their packages)."""

from .classifier import ImageClassifier
from .losses import CrossEntropyLoss
from .preprocessor import ClsDataPreprocessor, ImagePreprocessor

__all__ = ["ClsDataPreprocessor", "CrossEntropyLoss", "ImageClassifier", "ImagePreprocessor"]
