"""ONNX export: the exported encoder and decoder against PyTorch in onnxruntime (a small SAM and full-size
EdgeSAM), the decoder graph's meaning against the predictor (points with padding, a box as corner labels, a mask
input), and the CLI on a seeded checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from edgesam.export import OnnxDecoder, check_export, export_decoder, export_encoder, main, run_onnx  # noqa: E402
from edgesam.predictor import SamPredictor  # noqa: E402

from .official_fixtures import build_case_model, generator, load_case, load_manifest  # noqa: E402

TOL = 1e-4  # onnxruntime vs PyTorch, absolute, on logits and embeddings of order 1
# the logits resized to the original size: onnxruntime's Resize places its samples slightly differently from
# torch's interpolate at non-integer scales (measured 2e-5 on the small SAM, 7e-5 on EdgeSAM, on logits up to ~4)
MASK_TOL = 5e-4


def _within(diffs: dict[str, float]) -> bool:
    return all(v < (MASK_TOL if k == "masks" else TOL) for k, v in diffs.items())


@pytest.fixture(scope="module")
def tiny():
    return build_case_model(load_case("sam_tiny")[0])


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    return (export_encoder(tiny, tmp / "enc.onnx"), export_decoder(tiny, tmp / "dec.onnx"),
            export_decoder(tiny, tmp / "dec1.onnx", return_single_mask=True))


def test_small_sam_onnx_matches_torch(tiny, tiny_onnx):
    enc, dec, dec1 = tiny_onnx
    diffs = check_export(tiny, enc, dec)
    assert set(diffs) == {"image_embeddings", "masks", "iou_predictions", "low_res_masks"}
    assert _within(diffs), diffs
    assert _within(check_export(tiny, enc, dec1, return_single_mask=True))


def _onnx_prompt(predictor, points, labels, box=None, mask=None):
    """Official-export inputs for one prompt in original pixels: points padded with (0, 0, -1) without a box."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    lab = list(labels)
    if box is not None:
        pts = np.concatenate([pts, np.asarray(box, np.float64).reshape(2, 2)])
        lab += [2, 3]
    else:
        pts = np.concatenate([pts, np.zeros((1, 2))])
        lab += [-1]
    coords = predictor.transform.apply_coords(torch.as_tensor(pts), predictor.original_size)
    low = predictor.model.prompt_encoder.mask_input_size
    return {"image_embeddings": predictor.features, "point_coords": coords[None].float(),
            "point_labels": torch.tensor([lab], dtype=torch.float32),
            "mask_input": torch.zeros(1, 1, *low) if mask is None else torch.as_tensor(mask)[None],
            "has_mask_input": torch.tensor([0.0 if mask is None else 1.0]),
            "orig_im_size": torch.tensor(predictor.original_size, dtype=torch.float32)}


def test_decoder_graph_means_what_the_predictor_does(tiny, tiny_onnx):
    _, dec, dec1 = tiny_onnx
    predictor = SamPredictor(tiny)
    predictor.set_image(generator().fixture_image())
    gen = generator()
    mask = gen.mask_prompt(tiny.prompt_encoder.mask_input_size[0])
    cases = [  # (points, labels, box, mask, multimask)
        ([[70.0, 50.0]], [1], None, None, True),
        ([[80.0, 60.0], [40.0, 30.0]], [1, 0], [30.0, 20.0, 130.0, 95.0], None, False),
        ([[70.0, 50.0]], [1], None, mask, False),
    ]
    for points, labels, box, m, multi in cases:
        want_masks, want_iou, want_low = predictor.predict(np.array(points), np.array(labels),
                                                           None if box is None else np.array(box), m,
                                                           multimask_output=multi, return_logits=True)
        masks, iou, low = run_onnx(dec, _onnx_prompt(predictor, points, labels, box, m))
        keep = slice(1, 4) if multi else slice(0, 1)
        np.testing.assert_allclose(iou[0, keep], want_iou, atol=TOL)
        np.testing.assert_allclose(low[0, keep], want_low, atol=TOL)
        np.testing.assert_allclose(masks[0, keep], want_masks, atol=MASK_TOL)
    # single-mask rule: a lone point (2 inputs with the padding) -> best multimask output; a box prompt -> token 0
    masks, iou, _ = run_onnx(dec1, _onnx_prompt(predictor, [[70.0, 50.0]], [1]))
    _, all_iou, _ = run_onnx(dec, _onnx_prompt(predictor, [[70.0, 50.0]], [1]))
    assert masks.shape == (1, 1, 120, 176) and iou[0, 0] == pytest.approx(all_iou[0, 1:].max(), abs=1e-6)
    _, iou, _ = run_onnx(dec1, _onnx_prompt(predictor, [[80.0, 60.0]], [1], [30.0, 20.0, 130.0, 95.0]))
    _, all_iou, _ = run_onnx(dec, _onnx_prompt(predictor, [[80.0, 60.0]], [1], [30.0, 20.0, 130.0, 95.0]))
    assert iou[0, 0] == pytest.approx(all_iou[0, 0], abs=1e-6)


def test_single_mask_selection_in_torch(tiny):
    d = OnnxDecoder(tiny, return_single_mask=True)
    iou = torch.tensor([[0.9, 0.2, 0.7, 0.5]])
    masks = torch.arange(4.0).reshape(1, 4, 1, 1)
    assert d._select(masks, iou, 2)[0].item() == 2.0  # best of tokens 1..3
    assert d._select(masks, iou, 3)[0].item() == 0.0  # token 0 from three inputs on


def test_cli_exports_and_checks_edge_sam(tmp_path, capsys):
    ckpt = tmp_path / "edge_sam_seeded.pth"
    torch.save(generator().seeded_state_dict(load_manifest("edge_sam")), ckpt)
    assert main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "onnx"), "--check"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "onnx" / "edge_sam_seeded_encoder.onnx").is_file()
    diffs = {line.split()[-2].rstrip(":"): float(line.split()[-1]) for line in out.splitlines() if "max |" in line}
    assert set(diffs) == {"image_embeddings", "masks", "iou_predictions", "low_res_masks"}
    assert _within(diffs), diffs
    assert main(["--checkpoint", str(ckpt), "--model", "vit_b", "--out", str(tmp_path)]) == 2
    assert "not a vit_b checkpoint" in capsys.readouterr().err
