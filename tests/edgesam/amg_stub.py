"""TEST CODE ONLY: a hand-built stand-in for ``SamPredictor`` whose "decoder" knows the objects of an image, so that
automatic mask generation can be checked on an image whose answer is known, and against the official generator
(``tests/fixtures/edgesam/generate_amg.py`` gives the official ``SamAutomaticMaskGenerator`` this same stand-in).

For a point prompt at pixel p of the image set with ``set_image`` the stand-in returns three masks as logits
(``k`` = 0, 1, 2) with the scaled signed distance to the mask boundary (positive inside):

* ``k = 0``: pixels of p's colour within 8 px of the bounding box of p's 4-connected same-colour component (so a
  small same-coloured speck next to an object is an island of its mask), logit scale 2 (stable);
* ``k = 1``: the bounding box of that component, scale 0.4 (less stable);
* ``k = 2``: everything but the component, scale 2;

with predicted IoUs ``0.95 - 0.001 d``, ``0.75 - 0.001 d``, ``0.6 - 0.001 d`` (d = distance from p to the
component's centroid, so each object's most central prompt wins NMS). It answers the calls both generators make
(``set_image``, ``reset_image``, ``transform.apply_coords`` for numpy and torch, ``predict_torch``, ``device``,
``model.mask_threshold``), computing in float64 from the point it was given, so both see identical numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

LONG_SIDE = 1024
IMAGE_HW = (100, 150)
BACKGROUND = (128, 128, 128)


def objects_image() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(H, W, 3)`` uint8 image of flat-coloured objects and their ``(H, W)`` bool masks by name.

    A red rectangle with a 2 x 2 background-coloured hole and a 3 x 3 red speck 4 px to its right (both smaller
    than 10 px), a blue disc, a green ring and the yellow disc filling the ring's hole, on grey.
    """
    h, w = IMAGE_HW
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    rect = np.zeros((h, w), bool)
    rect[12:42, 15:60] = True
    rect[25:27, 30:32] = False  # hole
    speck = np.zeros((h, w), bool)
    speck[20:23, 64:67] = True
    disc = (yy - 68) ** 2 + (xx - 110) ** 2 < 22**2
    r2 = (yy - 70) ** 2 + (xx - 40) ** 2
    ring = (r2 < 18**2) & (r2 >= 8**2)
    inner = r2 < 8**2
    for m, c in ((rect | speck, (220, 30, 40)), (disc, (30, 60, 220)), (ring, (40, 200, 60)),
                 (inner, (240, 220, 30))):
        img[m] = c
    filled = rect.copy()
    filled[25:27, 30:32] = True
    return img, {"rect": rect, "rect_filled": filled, "speck": speck, "disc": disc, "ring": ring, "inner": inner}


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Distance to the nearest pixel of the other side, positive inside the mask."""
    if mask.all() or not mask.any():
        return np.full(mask.shape, 50.0 if mask.all() else -50.0)
    return ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)


class _Transform:
    """Points from the set image's pixels to a long-side-1024 frame (float64 for numpy and torch alike)."""

    def scale(self, size) -> float:
        return LONG_SIDE / max(int(size[0]), int(size[1]))

    def apply_coords(self, coords, original_size):
        s = self.scale(original_size)
        if isinstance(coords, torch.Tensor):
            return coords.double() * s
        return np.asarray(coords, np.float64) * s


class _Model:
    mask_threshold = 0.0


class ObjectsPredictor:
    """The stand-in predictor (module docstring)."""

    def __init__(self) -> None:
        self.transform = _Transform()
        self.model = _Model()
        self.device = torch.device("cpu")
        self.calls = 0
        self.reset_image()

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        self.image = np.asarray(image)
        self.original_size = self.image.shape[:2]

    def reset_image(self) -> None:
        self.image = None
        self.original_size = None

    def _masks(self, x: float, y: float) -> tuple[list[np.ndarray], list[float], list[float]]:
        h, w = self.original_size
        col, row = min(int(x), w - 1), min(int(y), h - 1)
        same = (self.image == self.image[row, col]).all(-1)
        labels, _ = ndimage.label(same)  # 4-connected
        comp = labels == labels[row, col]
        rows, cols = np.flatnonzero(comp.any(1)), np.flatnonzero(comp.any(0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        near = np.zeros_like(comp)
        near[max(y0 - 8, 0):y1 + 8, max(x0 - 8, 0):x1 + 8] = True
        box = np.zeros_like(comp)
        box[y0:y1, x0:x1] = True
        cy, cx = ndimage.center_of_mass(comp)
        d = float(np.hypot(x - cx - 0.5, y - cy - 0.5))
        return [same & near, box, ~comp], [2.0, 0.4, 2.0], [0.95 - 0.001 * d, 0.75 - 0.001 * d, 0.6 - 0.001 * d]

    @torch.no_grad()
    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True,
                      return_logits=False):
        """``(B, 1, 2)`` points in the 1024 frame -> logits ``(B, 3, H, W)``, IoU ``(B, 3)``, low-res (unused)."""
        assert multimask_output and point_coords.shape[1] == 1 and boxes is None and mask_input is None
        s = self.transform.scale(self.original_size)
        pts = np.round(point_coords[:, 0].double().cpu().numpy() / s, 6)
        logits, ious = [], []
        for x, y in pts:
            masks, scales, iou = self._masks(float(x), float(y))
            logits.append(np.stack([_signed_distance(m) * k for m, k in zip(masks, scales)]))
            ious.append(iou)
        self.calls += len(pts)
        out = torch.from_numpy(np.stack(logits)).float()
        iou = torch.tensor(ious, dtype=torch.float32)
        return (out if return_logits else out > 0), iou, out[..., ::4, ::4]
