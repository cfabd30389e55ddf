"""EdgeSAM and the Segment Anything family: SAM ViT-B/L/H, MobileSAM and EdgeSAM as plain torch modules with the
official parameter names (``image_encoder``, ``prompt_encoder``, ``mask_decoder``), ``build_sam`` by name or from
a checkpoint, and ``SamPredictor``. ``docs/edgesam.md`` says what is checked and how."""

from edgesam.amg import SamAutomaticMaskGenerator
from edgesam.build import MODEL_NAMES, CheckpointError, build_sam, detect_architecture, sam_from_encoder
from edgesam.predictor import SamPredictor
from edgesam.sam import Sam

__all__ = ["MODEL_NAMES", "CheckpointError", "Sam", "SamAutomaticMaskGenerator", "SamPredictor", "build_sam",
           "detect_architecture", "sam_from_encoder"]
