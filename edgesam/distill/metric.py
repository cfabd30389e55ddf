"""Agreement of a student with its teacher: the per-prompt mask IoU of :mod:`forge.evaluation.prompt` with the
teacher's mask (``teacher_masks``, same prompts) in place of the ground truth. Keys ``teacher/mIoU`` and the size
buckets ``teacher/mIoU_small`` ... (sizes from the teacher's mask area)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from forge.evaluation.prompt import PromptSegMetric, prompt_record

__all__ = ["TeacherAgreementMetric"]


class TeacherAgreementMetric(PromptSegMetric):
    """``process`` reads ``pred_masks`` and ``teacher_masks`` ``(P, H, W)`` bool from each image's record."""

    default_prefix = "teacher"

    def process(self, data_batch: Any, data_samples: Sequence[Mapping]) -> None:
        for sample in data_samples:
            if "teacher_masks" not in sample:
                raise KeyError(f"TeacherAgreementMetric: the model's predictions carry no 'teacher_masks' "
                               f"(keys: {sorted(sample)}); use it with edgesam.distill's distillers")
            self.results.append(prompt_record(sample["pred_masks"], sample["teacher_masks"]))
