"""What every ``forge-infer <paper>`` command shares.

* Rebuilding a trained model from a forge checkpoint and the ``config.yaml`` saved beside it (:func:`load_model`),
  and feeding it an image as its run's ``pipeline.val`` did (:func:`val_preprocess`).
* The command-line side (:class:`InferCommand`): bad input (an image, a checkpoint, an output file) ends the command
  with exit status 2 and one stderr line ``error: <prog>: <message>`` naming the file, never a traceback; one PNG
  per image (:func:`output_paths`).
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from .config import CONFIG_FILENAME, ConfigError, load_config

# what a checkpoint that is absent, unreadable or does not fit its model raises while it is loaded
LOAD_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def find_config(checkpoint: str, config: str | None = None) -> str:
    """``config`` if given, else ``config.yaml`` in the checkpoint's folder."""
    path = config or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), CONFIG_FILENAME)
    if not os.path.isfile(path):
        raise ConfigError(
            f"no config for checkpoint {checkpoint!r}: {path!r} does not exist (pass --config the run's config.yaml)"
        )
    return path


# what mmengine puts beside the weights (its message hub's history buffers hold numpy values); nothing else is allowed
_MMENGINE_GLOBALS = {
    "builtins.getattr",
    "numpy.dtype",
    "numpy._core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "mmengine.logging.history_buffer.HistoryBuffer",
}


def safe_load(checkpoint: str):
    """``torch.load(weights_only=True)``, also accepting the few mmengine/numpy types of forge's own checkpoints.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a PyTorch checkpoint (the file named), or one that needs other code to unpickle.
    """
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist")
    unreadable = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError)
    try:
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint))
    except unreadable as err:
        raise ValueError(f"{checkpoint}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if not unsafe <= _MMENGINE_GLOBALS:
        raise ValueError(
            f"{checkpoint!r} needs code to load ({sorted(unsafe - _MMENGINE_GLOBALS)}); refusing to unpickle it"
        )
    import builtins

    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = [builtins.getattr, np.dtype, np.ndarray, np._core.multiarray.scalar, np._core.multiarray._reconstruct,
               HistoryBuffer]
    allowed += [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "bool")]
    try:
        with torch.serialization.safe_globals(allowed if unsafe else []):
            return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except unreadable as err:
        raise ValueError(f"{checkpoint}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err


def load_state_dict(checkpoint: str) -> dict:
    """The model weights of a forge/mmengine checkpoint (``state_dict`` entry) or of a bare state dict."""
    ckpt = safe_load(checkpoint)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint!r} holds no state dict")
    return state


def load_model(checkpoint: str, config: str | None = None) -> tuple[torch.nn.Module, DictConfig]:
    """Instantiate the model of a saved config and load the checkpoint's weights strictly (eval mode, CPU).

    The model brings its own input normalisation (``model.data_preprocessor``: mean, std, channel order), so the
    pixel values of the run's pipeline go through it (``model.test_step``, or ``data_preprocessor.normalize``).
    """
    cfg = load_config(find_config(checkpoint, config))
    model = instantiate(cfg.model, _convert_="partial")
    missing, unexpected = model.load_state_dict(load_state_dict(checkpoint), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {checkpoint!r} does not match the model of its config: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    return model.eval(), cfg


def val_preprocess(cfg: DictConfig, device: torch.device | str = "cpu", *, with_masks: bool = True,
                   extra: Callable[[str], dict] | None = None, source: str = "the run's config"):
    """``image (H, W, 3) uint8 RGB, image_id, file_name -> (pixel batch (1, 3, H', W') on device, ImageMeta)``
    through the run's own ``pipeline.val`` and ``dataset.collate_fn``, so a run trained at another size or with a
    keep-ratio resize is fed what it was evaluated on. Not normalised: the model's data preprocessor does that in
    ``test_step``.

    Args:
        with_masks: the empty ground truth carries ``(0, H, W)`` masks (for pipelines that transform masks).
        extra: ``file_name -> ImageMeta.extra`` (e.g. a dataset's image ``ID``); none by default.
        source: how the error names the config.

    Raises:
        ValueError: the config has no ``pipeline.val``.
    """
    from hydra.utils import get_method

    from .data.collate import collate_detection
    from .data.structures import ImageMeta, Instances
    from .data.transforms import Compose, pack_sample

    data = cfg.get("dataset") or {}
    stages = (cfg.get("pipeline") or {}).get("val")
    if stages is None:
        old = " (it has dataset.val_pipeline: a config from before pipelines moved to their own group)" if data.get(
            "val_pipeline") is not None else ""
        raise ValueError(f"{source} has no pipeline.val{old}")
    pipeline = Compose(list(instantiate(stages, _convert_="partial")))
    collate = get_method(data.collate_fn) if data.get("collate_fn") else collate_detection

    def preprocess(image: np.ndarray, image_id: int, file_name: str):
        h, w = image.shape[:2]
        more: dict[str, Any] = {} if extra is None else {"extra": extra(file_name)}
        meta = ImageMeta(image_id=image_id, file_name=file_name, ori_shape=(h, w), img_shape=(h, w),
                         pad_shape=(h, w), **more)
        gt = Instances.empty(h, w) if with_masks else Instances.empty()
        batch = collate([pack_sample(pipeline(dict(img=np.array(image, dtype=np.uint8), gt=gt, meta=meta)))])
        return batch["inputs"].to(device), batch["data_samples"][0].meta

    return preprocess


def output_names(paths: Sequence[str]) -> list[str]:
    """``<stem>.png`` per image, ``<stem>_2.png``, ... for repeated stems, so no drawing overwrites another."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}.png")
    return names


def output_paths(images: Sequence[str], out: str) -> list[str]:
    """Where each image's drawing goes: ``out`` itself for one image and an ``out`` ending in ``.png``, else
    :func:`output_names` inside the folder ``out`` (created)."""
    if len(images) == 1 and out.lower().endswith(".png"):
        return [out]
    os.makedirs(out, exist_ok=True)
    return [os.path.join(out, name) for name in output_names(images)]


@dataclass(frozen=True)
class InferCommand:
    """Bad-input handling of the command ``prog`` (e.g. ``"forge-infer yolact"``).

    Attributes:
        prog: the command's name, after ``error:`` in every message.
        squash_whitespace: fold each message's white space (newlines included) to single spaces, for commands
            whose errors quote multi-line text from other libraries.
    """

    prog: str
    squash_whitespace: bool = False

    def fail(self, message: object) -> NoReturn:
        """``error: <prog>: <message>`` on stderr and exit status 2 (no traceback)."""
        text = " ".join(str(message).split()) if self.squash_whitespace else message
        print(f"error: {self.prog}: {text}", file=sys.stderr, flush=True)
        sys.exit(2)

    @contextmanager
    def exits_on(self, *errors: type[BaseException], prefix: str = "", named: str | None = None) -> Iterator[None]:
        """Turn ``errors`` raised inside the block into :meth:`fail` with ``prefix + <the error's text>``; where
        ``named`` (a file) already stands in the text, the text alone (the file is named once). A ``KeyError``
        gives its key's text, not its quoted ``repr``."""
        try:
            yield
        except errors as err:
            text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
            self.fail(text if named is not None and named in text else prefix + text)

    def loading(self, checkpoint: str, *errors: type[BaseException],
                prefix: str = "cannot load checkpoint") -> AbstractContextManager[None]:
        """:meth:`exits_on` for loading ``checkpoint``: ``errors`` (default :data:`LOAD_ERRORS`) end the command
        with ``<prefix> '<checkpoint>': <error>``, or the error alone where it names the file."""
        return self.exits_on(*(errors or LOAD_ERRORS), prefix=f"{prefix} {checkpoint!r}: ", named=checkpoint)

    def require_images(self, paths: Sequence[str]) -> None:
        """End the command naming every path in ``paths`` that is not a file."""
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            self.fail(f"image(s) not found: {', '.join(missing)}")

    def read_image(self, path: str) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB; a missing, non-image or truncated file ends the command naming it."""
        from PIL import Image

        with self.exits_on(OSError, ValueError, prefix=f"cannot read image {path!r}: "):
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))

    def save_image(self, image: Any, path: str) -> None:
        """Save ``image`` (``(H, W, 3)`` uint8 array or PIL image) to ``path``; failing ends the command naming it."""
        from PIL import Image

        with self.exits_on(OSError, ValueError, prefix=f"cannot write {path!r}: "):
            (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path)
