"""Prompted segmentation of one image: encode it once (``set_image``), then decode any number of prompts (points,
a box, both, a previous low-res mask, a batch of boxes) with masks returned at the original resolution."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from edgesam.sam import Sam
from edgesam.transforms import ResizeLongestSide


class SamPredictor:
    """Same calling convention as ``segment_anything.SamPredictor``; prompts are in original-image pixels (x, y),
    and bad prompts (none at all, outside the image, wrong shapes or labels) raise ``ValueError``."""

    def __init__(self, sam_model: Sam) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.img_size)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        self.features: Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.is_image_set = False

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an ``(H, W, 3)`` uint8 image (``image_format`` 'RGB' or 'BGR')."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].float()
        self.reset_image()
        self.features = self.model.image_encoder(self.model.preprocess(x))
        self.original_size = (image.shape[0], image.shape[1])
        self.input_size = (resized.shape[0], resized.shape[1])
        self.is_image_set = True

    def get_image_embedding(self) -> Tensor:
        """``(1, 256, h, w)`` embedding of the current image."""
        self._require_image()
        return self.features

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("set an image with set_image(...) before predicting")

    def _check_inside(self, xy: np.ndarray, what: str) -> None:
        h, w = self.original_size
        pts = xy.reshape(-1, 2)
        bad = ~np.isfinite(pts).all(1) | (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
        if bad.any():
            x, y = pts[np.argmax(bad)]
            raise ValueError(f"{what} ({x:g}, {y:g}) is outside the {w}x{h} image")

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None, multimask_output: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt, or for a batch of N prompts when ``box`` is ``(N, 4)``.

        Args:
            point_coords: ``(P, 2)`` (x, y) pixels, or ``(N, P, 2)`` with a batch of boxes; point_labels ``(P,)`` /
                ``(N, P)``, 1 foreground, 0 background.
            box: ``(4,)`` xyxy pixels, or ``(N, 4)`` for a batch.
            mask_input: low-res logits of a previous prediction, ``(1, 4h, 4w)`` (``(N, 1, 4h, 4w)`` for a batch).
            multimask_output: three masks (for ambiguous prompts such as one point) instead of one.
            return_logits: float logits instead of bool masks.

        Returns:
            masks ``(K, H, W)`` at the original size, IoU predictions ``(K,)``, low-res logits ``(K, 4h, 4w)``
            (K = 3 or 1), each with a leading N for a batch of boxes.
        """
        self._require_image()
        if point_coords is None and box is None and mask_input is None:
            raise ValueError("empty prompt: give point_coords, box or mask_input")
        batched = box is not None and np.ndim(box) == 2
        n = len(box) if batched else 1
        coords = labels = boxes = masks = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels are needed with point_coords")
            pc, pl = np.asarray(point_coords, np.float64), np.asarray(point_labels)
            if pc.ndim == 2:
                pc, pl = pc[None], pl[None]
            if pc.ndim != 3 or pc.shape[-1] != 2 or pc.shape[0] != n or pl.shape != pc.shape[:2] or pc.shape[1] == 0:
                raise ValueError(f"point_coords {np.shape(point_coords)} / point_labels {np.shape(point_labels)} "
                                 f"must be (P, 2) / (P,) or, for {n} boxes, ({n}, P, 2) / ({n}, P)")
            if not np.isin(pl, (0, 1)).all():
                raise ValueError(f"point_labels must be 0 (background) or 1 (foreground), got {np.unique(pl)}")
            self._check_inside(pc, "point")
            coords = self.transform.apply_coords(torch.as_tensor(pc), self.original_size).to(self.device)
            labels = torch.as_tensor(pl, dtype=torch.int64, device=self.device)
        if box is not None:
            if np.ndim(box) not in (1, 2) or np.shape(box)[-1] != 4:
                raise ValueError(f"box must be (4,) or (N, 4), got {np.shape(box)}")
            b = np.asarray(box, np.float64).reshape(-1, 4)
            self._check_inside(b, "box corner")
            if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
                raise ValueError(f"boxes must be x0 <= x1, y0 <= y1: {b[(b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])]}")
            boxes = self.transform.apply_boxes(torch.as_tensor(b), self.original_size).to(self.device)
        if mask_input is not None:
            m = torch.as_tensor(np.asarray(mask_input), dtype=torch.float32, device=self.device)
            masks = m[None] if m.ndim == 3 else m
            expect = (n, 1, *self.model.prompt_encoder.mask_input_size)
            if tuple(masks.shape) != expect:
                raise ValueError(f"mask_input must be {expect[1:] if n == 1 else expect}, got {tuple(m.shape)}")
        out_masks, iou, low = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits)
        out = (out_masks.cpu().numpy(), iou.cpu().numpy(), low.cpu().numpy())
        return out if batched else (out[0][0], out[1][0], out[2][0])

    @torch.no_grad()
    def predict_torch(self, point_coords: Tensor | None, point_labels: Tensor | None, boxes: Tensor | None = None,
                      mask_input: Tensor | None = None, multimask_output: bool = True,
                      return_logits: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Batched prompts already in the model-input frame (``transform.apply_coords`` / ``apply_boxes``):
        ``(B, P, 2)`` + ``(B, P)``, ``(B, 4)``, ``(B, 1, 4h, 4w)``. Returns masks ``(B, K, H, W)`` at the original
        size, IoU ``(B, K)`` and low-res logits ``(B, K, 4h, 4w)``."""
        self._require_image()
        points = (point_coords, point_labels) if point_coords is not None else None
        low, iou = self.model.decode(self.features, points, boxes, mask_input, multimask_output)
        masks = self.model.postprocess_masks(low, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low

    def to_original(self, coords: Tensor | Sequence[float]) -> Tensor:
        """Points ``(..., 2)`` from the model-input frame back to original-image pixels."""
        self._require_image()
        return self.transform.invert_coords(torch.as_tensor(coords), self.original_size)
