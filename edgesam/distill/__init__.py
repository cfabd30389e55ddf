"""EdgeSAM's two-phase distillation (encoder-only, then prompt-in-the-loop) and SAM training on GT masks, as mmengine
models for the shared runner; :mod:`edgesam.losses` and :mod:`edgesam.point_sampler` hold the losses and the
refinement-point sampler. ``docs/edgesam.md`` ("Training") has the configs and commands."""

from edgesam.distill.builders import load_weights, repvit_encoder, sam_model, vit_encoder
from edgesam.distill.metric import TeacherAgreementMetric
from edgesam.distill.models import EncoderDistiller, PromptDistiller, SamPromptTrainer
from edgesam.distill.teacher import SamEmbedder, Teacher

__all__ = ["EncoderDistiller", "PromptDistiller", "SamEmbedder", "SamPromptTrainer", "Teacher",
           "TeacherAgreementMetric", "load_weights", "repvit_encoder", "sam_model", "vit_encoder"]
