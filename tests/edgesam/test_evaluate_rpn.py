"""PromptSegmenter with the region-proposal module (paper's centre-point + RPN row): the box each click gets follows
the official merge rule, prompts without a containing proposal get the official not-a-point box tokens, the
proposal net sits outside the checkpointed module tree, and (slow) a forge-train RPN run on the shapes set feeds
forge-test centre-point evaluation with and without it."""

from __future__ import annotations

import pytest
import torch

from edgesam.evaluate import PromptSegmenter, resize_image
from edgesam.prompts import center_points
from edgesam.rpn import merge_proposals

from .test_evaluate import _input_gt, _sample, tiny_sam


class _StubRPN(torch.nn.Module):
    """Plays a proposal net: fixed proposals (input frame) for every image; records the inputs it was given."""

    def __init__(self, boxes, scores):
        super().__init__()
        self.boxes, self.scores, self.inputs = torch.tensor(boxes), torch.tensor(scores), []

    def propose_batch(self, inputs, score_thresh):
        self.inputs.append((inputs.clone(), score_thresh))
        return [(self.boxes, self.scores) for _ in range(inputs.shape[0])]


def _tokens(sam, pts, box):
    """Sparse tokens as the official prompt encoder builds them: the click, then the box corners, or two
    not-a-point tokens where there is no box (box_labels = -1)."""
    pe = sam.prompt_encoder
    point = pe.embed_points(pts, torch.ones(pts.shape[:2], dtype=torch.long), pad=False)
    corners = pe.embed_boxes(box[None]) if box is not None else pe.not_a_point_embed.weight.expand(1, 2, -1)
    return torch.cat([point, corners], 1)


def test_center_point_with_proposals_follows_the_official_prompt():
    img, s = _sample()  # 48 x 80 image, input 38 x 64 (scale 0.8)
    centres = center_points(_input_gt(s.gt.masks))[:, 0]  # (3, 2) clicks in the input frame
    # proposals (input frame): two around instance 0's click (the nearer one scores less), one around instance 1's
    # scored under the threshold, none around instance 2
    c0, c1 = centres[0].tolist(), centres[1].tolist()
    boxes = [[c0[0] - 6, c0[1] - 4, c0[0] + 6, c0[1] + 4], [c0[0] - 9, c0[1] - 7, c0[0] + 10, c0[1] + 6],
             [c1[0] - 5, c1[1] - 5, c1[0] + 5, c1[1] + 5]]
    rpn = _StubRPN(boxes, [0.3, 0.8, 0.05])
    sam = tiny_sam()
    model = PromptSegmenter(sam, mode="center_point", rpn=rpn)
    assert "rpn" not in dict(model.named_children()) and not any(k.startswith("rpn") for k in model.state_dict())
    out = model(img[None], [s])[0]
    assert rpn.inputs[0][1] == pytest.approx(0.1) and rpn.inputs[0][0].shape == (1, 3, 64, 64)
    got_box = [merge_proposals(c, rpn.boxes, rpn.scores) for c in centres.tolist()]
    assert torch.equal(got_box[0], rpn.boxes[1]) and got_box[1] is None and got_box[2] is None
    with torch.no_grad():
        emb = sam.image_encoder(sam.preprocess(resize_image(img, 64))[None])
    with torch.no_grad():
        for k in range(3):
            sparse = _tokens(sam, centres[k:k + 1, None], got_box[k])
            low, _ = sam.mask_decoder(image_embeddings=emb, image_pe=sam.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse,
                                      dense_prompt_embeddings=sam.prompt_encoder.no_mask_embed.weight
                                      .reshape(1, -1, 1, 1).expand(1, -1, *emb.shape[-2:]), multimask_output=False)
            want = sam.postprocess_masks(low, (38, 64), (48, 80))[0, 0] > 0
            assert torch.equal(out["pred_masks"][k], want), k
    # what each click got, for ProposalPromptStats: the merged box in original pixels (x / 0.8, y / (38 / 48))
    assert out["rpn_found"].tolist() == [True, False, False] and torch.equal(out["gt_boxes"], s.gt.boxes)
    torch.testing.assert_close(out["rpn_boxes"][0], rpn.boxes[1] / torch.tensor([0.8, 38 / 48, 0.8, 38 / 48]))
    assert (out["rpn_boxes"][1:] == 0).all()
    # without the proposal net the prompt that got a box has another mask (this seeded SAM reacts to the box)
    plain = PromptSegmenter(tiny_sam(), mode="center_point")(img[None], [s])[0]
    assert not torch.equal(plain["pred_masks"][0], out["pred_masks"][0]) and "rpn_found" not in plain


def test_rpn_refinement_keeps_the_box_and_bad_modes_are_refused():
    img, s = _sample()
    centres = center_points(_input_gt(s.gt.masks))[:, 0]
    c0 = centres[0].tolist()
    rpn = _StubRPN([[c0[0] - 6, c0[1] - 4, c0[0] + 6, c0[1] + 4]], [0.9])
    model = PromptSegmenter(tiny_sam(), mode="center_point", refine_iters=1, rpn=rpn)
    calls = []
    orig = model._decode

    def rec(emb, points, boxes):
        calls.append((points[0].shape, points[1].clone(), None if boxes is None else boxes.clone()))
        return orig(emb, points, boxes)

    model._decode = rec
    model(img[None], [s])
    # first decode: prompt 0 with its box (1 point), prompts 1-2 with a -1 point appended; then the same split with
    # one refinement point more
    assert [c[0][1] for c in calls] == [1, 2, 2, 3]
    assert calls[0][2] is not None and calls[1][2] is None and (calls[1][1][:, 1] == -1).all()
    assert torch.equal(calls[0][2], calls[2][2]) and (calls[3][1][:, 2] == -1).all()
    with pytest.raises(ValueError, match="not a point mode"):
        PromptSegmenter(tiny_sam(), mode="box", rpn=rpn)


def test_eval_rpn_experiments_compose():
    from tests.forge.helpers import compose_cfg

    cfg = compose_cfg(["experiment=edgesam/eval_coco_center_point_rpn"], "test")
    assert cfg.model.mode == "center_point" and cfg.model.rpn._target_ == "edgesam.rpn.ProposalNet"
    assert (cfg.model.rpn_topk, cfg.model.rpn_score_thr) == (5, 0.1)
    assert cfg.paper.mIoU.edge_sam == 48.0 and cfg.paper.mIoU.edge_sam_rpn == 54.3
    assert cfg.model.rpn.encoder.img_size == 1024
