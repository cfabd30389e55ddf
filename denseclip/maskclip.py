"""MaskCLIP: dense CLIP features without attention pooling, cosine logits against a text classifier (paper Sec. 3).

Dense features as the official code computes them:

* **ResNet CLIP**: the last feature map ``x = layer4(...)`` ``(B, C, h, w)`` goes through the attention pool's
  value and output projections as 1x1 convolutions, ``feat = c_proj(v_proj(x))`` — no attention, the pool's
  positional embedding unused. Keys (for key smoothing) are ``k_proj(x)``.
* **ViT CLIP**: blocks 1..L-1 as usual (positional embedding resized bicubic, align_corners=False, to the input's
  patch grid; the image zero-padded bottom/right to a multiple of the patch); in the last block, with
  ``y = ln_1(x)`` and ``q, k, v = in_proj(y)``, each of ``q, k, v`` passes ``out_proj``; the feature is
  ``v' = v + x``, ``v'' = v' + mlp(ln_2(v'))``, then ``ln_post`` and ``proj`` at every patch token. Keys are the
  ``out_proj``-ed ``k``.

Variants of the last ViT block, sharing everything else (``variant=``):

* ``maskclip`` — the value path above;
* ``clearclip`` — ClearCLIP (Lan et al., ECCV 2024): query-query attention, **no residual and no MLP**;
* ``sclip`` — SCLIP (Wang et al., ECCV 2024): correlative self-attention ``softmax(q q^T) + softmax(k k^T)``
  (scaled by ``head_dim^-0.5``) applied to ``v``, residual and MLP kept as in SCLIP's released code.

``protocol="official"`` (default) feeds the visual tower as MaskCLIP's mmseg port does, which differs from CLIP's
own preprocessing in three ways: ImageNet mean/std (123.675/116.28/103.53, 58.395/57.12/57.375) instead of
CLIP's (122.771/116.746/104.094, 68.501/66.632/70.323); exact GELU instead of QuickGELU in the ViT's MLPs; and
LayerNorm eps 1e-6 instead of 1e-5 in the ViT. ``protocol="clip"`` keeps CLIP's own. (ResNets use ReLU and
BatchNorm either way; only the mean/std differ.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIP
from torch import Tensor, nn

from .clip_loading import LoadedCLIP
from .refine import KEY_NORMS, refine

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
CLIP_MEAN = tuple(255.0 * m for m in OPENAI_DATASET_MEAN)
CLIP_STD = tuple(255.0 * s for s in OPENAI_DATASET_STD)
PROTOCOLS = ("official", "clip")
VARIANTS = ("maskclip", "clearclip", "sclip")
OFFICIAL_LN_EPS = 1e-6


def resize_positional_embedding(pos: Tensor, grid: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """``(1 + h0*w0, W)`` -> ``(1 + h*w, W)``: the class-token entry kept, the square patch grid resized with
    ``F.interpolate(mode, align_corners=False)`` (the official ``resize_pos_embed``)."""
    n = pos.shape[0] - 1
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise ValueError(f"positional embedding of {n} patch entries is not a square grid")
    if (side, side) == tuple(grid):
        return pos
    patch = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch.float(), size=tuple(grid), mode=mode, align_corners=False).to(pos.dtype)
    return torch.cat([pos[:1], patch.flatten(2).transpose(1, 2)[0]], dim=0)


def cosine_logits(features: Tensor, text_embeddings: Tensor) -> Tensor:
    """``(B, D, h, w)`` features (any norm) x ``(C, D)`` text embeddings -> ``(B, C, h, w)`` cosine similarity
    (features L2-normalised over channels; the text embeddings used as given; no logit scale)."""
    feats = features / features.norm(dim=1, keepdim=True)
    return torch.einsum("bdhw,cd->bchw", feats, text_embeddings.to(feats.dtype))


def _heads(x: Tensor, n: int) -> Tensor:
    b, t, w = x.shape
    return x.reshape(b, t, n, w // n).transpose(1, 2)  # (B, heads, T, head_dim)


def _attend(weights: Tensor, v: Tensor) -> Tensor:
    out = weights @ v  # (B, heads, T, head_dim)
    return out.transpose(1, 2).flatten(2)


class MaskCLIP(nn.Module):
    """Training-free dense classifier on a frozen CLIP visual tower.

    Args:
        clip: a :class:`~denseclip.clip_loading.LoadedCLIP` or an open_clip ``CLIP``; its visual tower is copied
            (the given model is never modified).
        text_embeddings: ``(C, D)`` class embeddings (:func:`~denseclip.text_classifier.build_text_classifier`).
        variant: ``maskclip`` | ``clearclip`` | ``sclip`` (ViT only; ResNets have just ``maskclip``).
        protocol: ``official`` (MaskCLIP's mean/std, GELU, LN eps) | ``clip`` (CLIP's own); module docstring.
        key_smoothing: KS threshold (0 = off; the paper's 1.0).
        prompt_denoising: PD threshold (0 = off; the paper's 0.5).
        key_norm: ``official`` (normalise keys over positions) | ``cosine`` (per key); see :mod:`denseclip.refine`.
    """

    def __init__(self, clip: LoadedCLIP | CLIP, text_embeddings: Tensor, *, variant: str = "maskclip",
                 protocol: str = "official", key_smoothing: float = 0.0, prompt_denoising: float = 0.0,
                 key_norm: str = "official") -> None:
        super().__init__()
        model = clip.model if isinstance(clip, LoadedCLIP) else clip
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if key_norm not in KEY_NORMS:
            raise ValueError(f"key_norm must be one of {KEY_NORMS}, got {key_norm!r}")
        visual = copy.deepcopy(model.visual).eval()
        self.is_vit = hasattr(visual, "conv1") and hasattr(visual, "transformer")
        if not self.is_vit and not hasattr(visual, "attnpool"):
            raise TypeError(f"unsupported CLIP visual tower {type(visual).__name__} (need ViT or ModifiedResNet)")
        if not self.is_vit and variant != "maskclip":
            raise ValueError(f"variant {variant!r} needs a ViT CLIP (ResNet CLIPs have no last attention block)")
        if self.is_vit and getattr(visual, "attn_pool", None) is not None:
            raise ValueError("ViTs with an attentional pooler are not supported")
        if self.is_vit and protocol == "official":
            for m in visual.modules():  # the mmseg port's LN eps and exact GELU (see module docstring)
                if isinstance(m, nn.LayerNorm):
                    m.eps = OFFICIAL_LN_EPS
            for blk in visual.transformer.resblocks:
                blk.mlp.gelu = nn.GELU()
        for p in visual.parameters():
            p.requires_grad_(False)
        self.visual = visual
        self.variant, self.protocol, self.key_norm = variant, protocol, key_norm
        self.key_smoothing, self.prompt_denoising = float(key_smoothing), float(prompt_denoising)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if protocol == "official" else (CLIP_MEAN, CLIP_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("text_embeddings", text_embeddings.detach().float().clone(), persistent=False)
        if text_embeddings.ndim != 2 or text_embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"text embeddings {tuple(text_embeddings.shape)} do not fit the CLIP's embedding "
                             f"width {self.embed_dim} (need (C, {self.embed_dim}))")

    @property
    def embed_dim(self) -> int:
        return int(self.visual.proj.shape[1] if self.is_vit else self.visual.attnpool.c_proj.out_features)

    @property
    def num_classes(self) -> int:
        return int(self.text_embeddings.shape[0])

    @property
    def stride(self) -> int:
        """Pixels per feature cell: the patch size (ViT) or 32 (ResNet)."""
        return int(self.visual.conv1.kernel_size[0]) if self.is_vit else 32

    def set_text_embeddings(self, text_embeddings: Tensor) -> None:
        """Swap the classifier ``(C', D)`` (another class list) without rebuilding."""
        if text_embeddings.ndim != 2 or text_embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"text embeddings {tuple(text_embeddings.shape)} need shape (C, {self.embed_dim})")
        self.text_embeddings = text_embeddings.detach().float().to(self.mean.device).clone()

    def normalize(self, pixels: Tensor) -> Tensor:
        """``(B, 3, H, W)`` RGB pixel values 0..255 (any dtype) -> the network input of this protocol."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) RGB pixels, got {tuple(pixels.shape)}")
        return (pixels.float() - self.mean) / self.std

    # ----------------------------------------------------------------------------------------------- features
    def _vit_tokens(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Normalised ``(B, 3, H, W)`` -> tokens before the last block ``(B, 1 + h*w, W)`` and ``(h, w)``."""
        v = self.visual
        p = int(v.conv1.kernel_size[0])
        pad_h, pad_w = (-x.shape[2]) % p, (-x.shape[3]) % p
        if pad_h or pad_w:  # mmseg PatchEmbed(padding="corner"): zeros at the bottom/right
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = v.conv1(x.to(v.conv1.weight.dtype))
        grid = (int(x.shape[2]), int(x.shape[3]))
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + resize_positional_embedding(v.positional_embedding, grid).to(x.dtype)
        x = v.ln_pre(x)
        batch_first = getattr(v.transformer, "batch_first", True)
        x = x if batch_first else x.transpose(0, 1)
        for blk in v.transformer.resblocks[:-1]:
            x = blk(x)
        return (x if batch_first else x.transpose(0, 1)), grid

    def _vit_last_block(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens ``(B, T, W)`` -> (dense embeddings ``(B, T, D)``, keys ``(B, T, W)``) per :attr:`variant`."""
        blk = self.visual.transformer.resblocks[-1]
        attn = blk.attn
        q, k, v = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        keys = attn.out_proj(k)  # the official code passes q, k and v through out_proj
        if self.variant == "maskclip":
            y = x + blk.ls_1(attn.out_proj(v))
            y = y + blk.ls_2(blk.mlp(blk.ln_2(y)))
        else:
            n = attn.num_heads
            qh, kh, vh = _heads(q, n), _heads(k, n), _heads(v, n)
            scale = qh.shape[-1] ** -0.5
            weights = F.softmax(qh @ qh.transpose(-2, -1) * scale, dim=-1)
            if self.variant == "sclip":
                weights = weights + F.softmax(kh @ kh.transpose(-2, -1) * scale, dim=-1)
            out = attn.out_proj(_attend(weights, vh))
            if self.variant == "clearclip":
                y = out  # no residual, no MLP
            else:
                y = x + blk.ls_1(out)
                y = y + blk.ls_2(blk.mlp(blk.ln_2(y)))
        return self.visual.ln_post(y) @ self.visual.proj, keys

    def dense_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised images ``(B, 3, H, W)`` -> (features ``(B, D, h, w)``, not normalised; keys
        ``(B, h*w, C_k)`` for key smoothing). ``h = ceil(H / patch)`` (ViT) or ``H / 32`` (ResNet)."""
        if self.is_vit:
            tokens, (h, w) = self._vit_tokens(x)
            emb, keys = self._vit_last_block(tokens)
            feats = emb[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, h, w)
            return feats, keys[:, 1:]
        v = self.visual
        x = x.to(v.conv1.weight.dtype)
        x = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))
        pool = v.attnpool

        def conv1x1(t: Tensor, lin: nn.Linear) -> Tensor:
            return F.conv2d(t, lin.weight[:, :, None, None], lin.bias)

        feats = conv1x1(conv1x1(x, pool.v_proj), pool.c_proj)
        keys = conv1x1(x, pool.k_proj).flatten(2).transpose(1, 2)
        return feats, keys

    # ---------------------------------------------------------------------------------------------- inference
    def feature_logits(self, pixels: Tensor, refined: bool = True) -> Tensor:
        """``(B, 3, H, W)`` pixels 0..255 -> ``(B, C, h, w)`` at feature resolution: cosine logits, then (if
        ``refined`` and their thresholds > 0) prompt denoising and key smoothing."""
        feats, keys = self.dense_features(self.normalize(pixels))
        logits = cosine_logits(feats.float(), self.text_embeddings)
        if refined:
            logits = refine(logits, keys.float(), self.key_smoothing, self.prompt_denoising, self.key_norm)
        return logits

    def whole_logits(self, pixels: Tensor) -> Tensor:
        """``(B, C, H, W)``: :meth:`feature_logits` upsampled bilinearly (align_corners=False) to the input."""
        return F.interpolate(self.feature_logits(pixels), size=pixels.shape[-2:], mode="bilinear",
                             align_corners=False)

    def slide_logits(self, pixels: Tensor, crop: int | Sequence[int], stride: int | Sequence[int]) -> Tensor:
        """Sliding-window ``(B, C, H, W)``: :meth:`whole_logits` of each ``crop`` window, placed every ``stride``
        pixels (the last window flush with the border; windows clipped to a smaller image), averaged where
        windows overlap — mmseg's ``slide_inference``."""
        ch, cw = (crop, crop) if isinstance(crop, int) else tuple(crop)
        sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
        if min(ch, cw, sh, sw) <= 0:
            raise ValueError(f"crop {crop} and stride {stride} must be positive")
        b, _, h, w = pixels.shape
        out = pixels.new_zeros((b, self.num_classes, h, w), dtype=torch.float32)
        count = pixels.new_zeros((1, 1, h, w), dtype=torch.float32)
        for i in range(max(h - ch + sh - 1, 0) // sh + 1):
            for j in range(max(w - cw + sw - 1, 0) // sw + 1):
                y2, x2 = min(i * sh + ch, h), min(j * sw + cw, w)
                y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
                out[:, :, y1:y2, x1:x2] += self.whole_logits(pixels[:, :, y1:y2, x1:x2])
                count[:, :, y1:y2, x1:x2] += 1
        return out / count

    @torch.no_grad()
    def forward(self, pixels: Tensor, mode: str = "whole", crop: int | Sequence[int] = 224,
                stride: int | Sequence[int] = 112) -> Tensor:
        """``(B, 3, H, W)`` RGB pixels 0..255 -> ``(B, C, H, W)`` class scores (``mode`` ``whole`` | ``slide``)."""
        if mode == "whole":
            return self.whole_logits(pixels)
        if mode == "slide":
            return self.slide_logits(pixels, crop, stride)
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")

    @torch.no_grad()
    def predict(self, pixels: Tensor, **kwargs) -> Tensor:
        """``(B, 3, H, W)`` pixels -> ``(B, H, W)`` int64 class indices (argmax of :meth:`forward`)."""
        return self(pixels, **kwargs).argmax(dim=1)
