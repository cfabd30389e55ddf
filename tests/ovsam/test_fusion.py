"""Score fusion on hand-computed values (the official open_voc_inference)."""

from __future__ import annotations

import math

import torch

from ovsam import classify, fuse_scores, top_labels


def test_fusion_by_hand():
    # 2 classes + background; class 0 base, class 1 novel
    head = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))   # softmax gives back these probabilities
    clip = torch.log(torch.tensor([[0.2, 0.7, 0.1]]))
    out = fuse_scores(head, clip, base=torch.tensor([True, False]))
    want = [0.9 * math.log(0.6) + 0.1 * math.log(0.2),     # base: head^0.9 clip^0.1
            0.1 * math.log(0.3) + 0.9 * math.log(0.7),     # novel: head^0.1 clip^0.9
            0.9 * math.log(0.1) + 0.1 * math.log(0.1)]     # background counts as seen
    torch.testing.assert_close(out, torch.tensor([want]))
    scores, idx = top_labels(out, k=2)
    # softmax over the fused log-scores, background dropped: novel class 1 wins
    p = torch.tensor(want).softmax(0)
    assert idx.tolist() == [[1, 0]]
    torch.testing.assert_close(scores, torch.stack([p[1], p[0]])[None])


def test_empty_mask_uses_head_only_and_ignored_classes():
    head = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    clip = torch.log(torch.tensor([[0.1, 0.1, 0.8], [0.1, 0.1, 0.8]]))
    out = fuse_scores(head, clip, base=torch.tensor([False, False]), valid=torch.tensor([True, False]),
                      ignore=torch.tensor([False, True]))
    torch.testing.assert_close(out[1, 0], torch.tensor(math.log(0.5)))
    torch.testing.assert_close(out[0, 0], torch.tensor(0.1 * math.log(0.5) + 0.9 * math.log(0.1)))
    assert (out[:, 1] == -1000).all()


def test_classify_cosine_x100_with_synonyms_and_zero_background():
    emb = torch.tensor([[3.0, 4.0]])                       # unit: (0.6, 0.8)
    cls = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],          # class 0: synonyms e1, e2 -> max(0.6, 0.8)
                        [[-1.0, 0.0], [-1.0, 0.0]]])       # class 1: -0.6
    torch.testing.assert_close(classify(emb, cls), torch.tensor([[80.0, -60.0, 0.0]]))
    torch.testing.assert_close(classify(emb, cls[:, 0]), torch.tensor([[60.0, -60.0, 0.0]]))
