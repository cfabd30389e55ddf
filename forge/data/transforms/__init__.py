"""Detection/instance-segmentation transforms that keep image, boxes and masks consistent.

Every transform is a small picklable callable class ``t(sample) -> sample`` on a **sample dict**:

``img``
    ``(H, W, 3)`` ``np.ndarray`` of RGB **pixel values**: uint8 as loaded, float32 after a step that computes in
    float (:class:`PhotometricDistort`, an :class:`Expand` with a fractional fill, a ``keep_float``
    :class:`Resize`). Never normalised: mean, std and channel order belong to the model's data preprocessor
    (:class:`forge.models.ImagePreprocessor`).
``gt``
    :class:`~forge.data.structures.Instances` in the coordinates of ``img``: boxes xyxy (exclusive ``x2``/``y2``),
    masks ``(N, H, W)`` bool at the size of ``img`` (or None for box-only data such as CrowdHuman).
``meta``
    :class:`~forge.data.structures.ImageMeta`; :class:`Resize` updates ``scale_factor``/``img_shape``,
    :class:`RandomMirror` toggles ``flip``.
``extra_boxes`` (optional)
    ``dict[str, Tensor(N, 4)]`` of further per-instance boxes (CrowdHuman's visible boxes); every geometric
    transform moves them with ``gt.boxes`` and every filter keeps them aligned.

Box arithmetic (IoU, conversion, flip, clip, scale) is :mod:`forge.ops.boxes`'s. Randomness comes from the global
``numpy.random`` state only, which mmengine seeds per data-loader worker, so a seeded run is reproducible.

Constructors carry no paper's constants: sizes, thresholds and fill colours that are a paper's choice are required
arguments, and each paper's pipeline lives in ``forge/configs/pipeline/`` (YOLACT's SSD augmentation with its
quirks: ``pipeline/yolact_ssd.yaml``; see ``docs/data.md``).

Modules: :mod:`.base` (sample helpers, :class:`Compose`), :mod:`.photometric`, :mod:`.ssd` (:class:`Expand`,
:class:`RandomSampleCrop`), :mod:`.geometric` (:class:`RandomMirror`, :class:`Resize`), :mod:`.jitter`
(large-scale jitter: :class:`RandomResize`, :class:`RandomCrop`), :mod:`.filters`, :mod:`.formatting`
(:func:`pack_sample`).
"""

from .base import Compose, Sample
from .filters import FilterSmallBoxes, FilterSmallMasks, KeepClasses
from .formatting import Normalize, pack_sample
from .geometric import RandomMirror, Resize, resize_image
from .jitter import RandomCrop, RandomResize
from .photometric import PhotometricDistort, hsv_to_rgb, rgb_to_hsv
from .ssd import Expand, RandomSampleCrop

__all__ = [
    "Compose",
    "Expand",
    "FilterSmallBoxes",
    "FilterSmallMasks",
    "KeepClasses",
    "Normalize",
    "PhotometricDistort",
    "RandomCrop",
    "RandomMirror",
    "RandomResize",
    "RandomSampleCrop",
    "Resize",
    "Sample",
    "hsv_to_rgb",
    "pack_sample",
    "resize_image",
    "rgb_to_hsv",
]
