"""Helpers for the official-output fixtures (tests/fixtures/edgesam, see its README): the generator's seeded
weights, image and prompts (one definition, loaded from the generator by path), and building our model of a case."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np

from edgesam.build import sam_from_encoder
from edgesam.image_encoder import ImageEncoderViT
from edgesam.predictor import SamPredictor
from edgesam.rep_vit import RepViT
from edgesam.sam import Sam
from edgesam.tiny_vit import TinyViT

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edgesam"


@functools.cache
def generator() -> ModuleType:
    """``generate_official.py`` (a standalone script run beside the official code; importing it needs only torch,
    numpy and PIL)."""
    spec = importlib.util.spec_from_file_location("edgesam_generate_official", FIXTURES / "generate_official.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_manifest(name: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"{name}.manifest.json").read_text())


def load_case(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``(case json, arrays)`` of one output case."""
    meta = json.loads((FIXTURES / f"{name}.case.json").read_text())
    with np.load(FIXTURES / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return meta, arrays


def build_case_model(meta: dict) -> Sam:
    """Our model of a case, with the case's seeded weights loaded strictly, in eval mode."""
    case = meta["case"]
    if case["family"] == "sam":
        encoder = ImageEncoderViT(**case["encoder"])
    elif case["family"] == "mobile_sam":
        encoder = TinyViT()
    else:
        encoder = RepViT()
    model = sam_from_encoder(encoder, case["image_size"])
    model.load_state_dict(generator().seeded_state_dict(meta["state_dict"], meta["weight_seed"]), strict=True)
    return model.eval()


def run_prompts(predictor: SamPredictor) -> dict[str, np.ndarray]:
    """Our outputs in the fixture's layout (``predictor_outputs`` of the generator), image already set."""
    gen = generator()
    feats = predictor.features
    s = gen.embedding_stride(feats.shape[-1])
    out = {"embedding_sample": feats[0, :, ::s, ::s].numpy(),
           "embedding_stats": np.array([feats.mean().item(), feats.abs().mean().item()]),
           "input_size": np.array(predictor.input_size)}
    lowres = predictor.model.prompt_encoder.mask_input_size[0]
    for name, p in gen.PROMPTS.items():
        if name == "boxes":
            masks, iou, low = predictor.predict(box=np.array(p["boxes"]), multimask_output=p["multimask"],
                                                return_logits=True)
        else:
            masks, iou, low = predictor.predict(
                point_coords=np.array(p["point_coords"]) if "point_coords" in p else None,
                point_labels=np.array(p["point_labels"]) if "point_labels" in p else None,
                box=np.array(p["box"]) if "box" in p else None,
                mask_input=gen.mask_prompt(lowres) if p.get("mask") else None,
                multimask_output=p["multimask"], return_logits=True)
            masks, iou, low = masks[None], iou[None], low[None]
        ls = gen.lowres_stride(low.shape[-1])
        out[f"{name}.iou"] = iou
        out[f"{name}.lowres_sample"] = low[..., ::ls, ::ls]
        out[f"{name}.lowres_stats"] = np.array([low.mean(), np.abs(low).mean()])
        out[f"{name}.logits"] = masks
        out[f"{name}.logits_sample"] = masks[..., ::4, ::4]
    return out


def case_outputs(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(ours, official)`` for one case: our model on the fixture image with every fixture prompt."""
    meta, ref = load_case(name)
    predictor = SamPredictor(build_case_model(meta))
    predictor.set_image(generator().fixture_image())
    return run_prompts(predictor), ref
