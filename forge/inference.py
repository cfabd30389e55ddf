"""Rebuild a trained model from a forge checkpoint and the ``config.yaml`` saved beside it."""

from __future__ import annotations

import os
import pickle

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from .config import CONFIG_FILENAME, ConfigError, load_config


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
