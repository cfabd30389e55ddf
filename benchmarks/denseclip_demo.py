"""``make demo-denseclip``: a CLIP that knows something, MaskCLIP on it, MaskCLIP+ on MaskCLIP's pseudo-labels.

1. Train a small CLIP (open_clip's ``CLIP`` with a ModifiedResNet image tower, open_clip's ``ClipLoss``) on
   synthetic scenes of coloured shapes with captions naming colours and shapes (:mod:`forge.data.semseg.synthetic`);
   AdamW at ``--clip-lr`` 5e-4, cosine. At the earlier 2e-3 the CLIP learnt colours only: it named shapes at
   chance and gave "a red star" and "a red circle" the same text embedding, which ``make demo-ovsam`` needs apart
   (``benchmarks/clip_shape_probe.py``: even with shape labels this tower learns shapes faster and more stably at
   5e-4).
2. MaskCLIP (:class:`denseclip.MaskCLIP`, no training) segments the synthetic semantic split into the colour
   classes; the text classifier averages the prompts "a {} circle", "a {} square", ... (the captions' language).
3. MaskCLIP+ (:class:`denseclip.plus.MaskCLIPPlus`: DeepLabv2 ASPP on a small dilated ResNet, output stride 8, the
   frozen text embeddings as classifier) trains on MaskCLIP's pseudo-labels computed in each step (SGD 0.01, poly),
   annotation-free: CLIP-guided throughout as the official annotation-free configs (``--self-train-frac 0.1`` for
   the zero-shot rows' switch); the background mask is known, as in the official VOC-20 protocol where background
   pixels are ignored.
4. mIoU of chance (uniformly random labels), MaskCLIP and MaskCLIP+ on the split, a picture of image / MaskCLIP /
   MaskCLIP+ / ground truth, both written into docs/benchmarks.md (section ``denseclip-demo``).

``--quick`` is the shortened run of the test suite (about a minute, nothing written to the docs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)  # MaskCLIP's official (ImageNet) values
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
SECTION = "denseclip-demo"
TITLE = "## DenseCLIP demo: MaskCLIP and MaskCLIP+ on a CLIP trained on synthetic shapes"


def tiny_clip(image_size: int, arch: str = "vit"):
    """open_clip ``CLIP``: a 3-block ViT (width 64, patch 16) or a ModifiedResNet (1 block per stage, width 16)."""
    from open_clip.model import CLIP

    vision = (dict(layers=3, width=64, patch_size=16, image_size=image_size, head_width=32) if arch == "vit" else
              dict(layers=[1, 1, 1, 1], width=16, image_size=image_size, head_width=32))
    return CLIP(embed_dim=64, vision_cfg=vision, quick_gelu=False,
                text_cfg=dict(context_length=16, vocab_size=49408, width=64, heads=2, layers=2))


def train_clip(args, log) -> torch.nn.Module:
    from open_clip.loss import ClipLoss
    from open_clip.tokenizer import tokenize

    from forge.data.semseg.synthetic import make_batch

    torch.manual_seed(args.seed)
    model = tiny_clip(args.size, args.clip_arch)
    imgs, _, caps = make_batch(args.seed, 0, args.pool, args.size)
    pix = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    tokens = tokenize(caps, context_length=16)
    mean, std = MEAN, STD
    opt = torch.optim.AdamW(model.parameters(), lr=args.clip_lr, weight_decay=0.05)
    loss_fn = ClipLoss()
    rng = np.random.default_rng(args.seed)
    t0, step, losses = time.time(), 0, []
    model.train()
    while step < args.clip_steps and time.time() - t0 < args.clip_minutes * 60:
        idx = torch.from_numpy(rng.choice(len(pix), args.clip_batch, replace=False))
        x = (pix[idx].float() - mean) / std
        lr = args.clip_lr * 0.5 * (1 + math.cos(math.pi * min(step / args.clip_steps, 1.0)))
        for g in opt.param_groups:
            g["lr"] = lr
        image_features, text_features, logit_scale = model(x, tokens[idx])[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 50 == 0 or step == 1:
            log(f"clip step {step}: loss {np.mean(losses[-50:]):.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    model.demo_stats = dict(steps=step, seconds=time.time() - t0, first_loss=losses[0],
                            loss=float(np.mean(losses[-20:])))
    return model


def evaluate(predict, imgs: np.ndarray, labs: np.ndarray, num_classes: int, batch: int = 16) -> tuple[float, list]:
    from forge.evaluation.semseg import confusion_matrix, semseg_metrics

    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    preds = []
    for i in range(0, len(imgs), batch):
        x = torch.from_numpy(imgs[i : i + batch]).permute(0, 3, 1, 2).float()
        p = predict(x)
        preds.extend(p)
        for pi, gi in zip(p, labs[i : i + batch]):
            conf += confusion_matrix(pi, torch.from_numpy(gi.astype(np.int64)), num_classes, 255)
    return float(semseg_metrics(conf)["mIoU"]), preds


def train_plus(args, maskclip, log):
    from denseclip.plus.model import MaskCLIPPlus
    from forge.data.semseg.synthetic import make_batch
    from forge.models.preprocessor import ImagePreprocessor

    torch.manual_seed(args.seed)
    pre = ImagePreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
    start = int(args.plus_iters * args.self_train_frac) if args.self_train_frac > 0 else None
    model = MaskCLIPPlus(maskclip, unlabeled_classes=None, self_train_start=start,
                         decoder="aspp", backbone_layers=(1, 1, 1, 1), width_scale=0.25, data_preprocessor=pre)
    imgs, labs, _ = make_batch(args.seed + 7, 0, args.plus_pool, args.size)
    pix = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    # annotation-free: every object pixel unlabelled (-1), the background ignored (255) as VOC-20's
    gt = torch.from_numpy(labs.astype(np.int64))
    gt = torch.where(gt == 255, gt, torch.full_like(gt, -1))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(args.seed)
    from forge.data.semseg.sample import SegSample
    from forge.data.structures import ImageMeta

    t0 = time.time()
    model.train()
    history = []
    for it in range(args.plus_iters):
        for g in opt.param_groups:
            g["lr"] = max(0.01 * (1 - it / args.plus_iters) ** 0.9, 1e-4)
        idx = rng.choice(len(pix), args.plus_batch, replace=False)
        x, y = pix[idx].float(), gt[idx].clone()
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        samples = [SegSample(meta=ImageMeta(image_id=int(i)), gt_sem_seg=y[k]) for k, i in enumerate(idx)]
        losses = model.loss(pre.normalize(x), samples)
        opt.zero_grad()
        losses["loss_ce"].backward()
        opt.step()
        history.append(float(losses["loss_ce"].detach()))
        if (it + 1) % 25 == 0:
            log(f"maskclip+ iter {it + 1}: loss {history[-1]:.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    model.demo_seconds = time.time() - t0
    model.demo_losses = history
    return model, pre


def picture(path: str, imgs, mc, mp, labs, n: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from forge.data.semseg.synthetic import COLOURS

    pal = np.array(list(COLOURS.values()) + [(255, 255, 255)] * 250, dtype=np.uint8)
    pal[255] = (40, 40, 40)

    def paint(lab, gt):
        lab = np.asarray(lab).copy()
        lab[np.asarray(gt) == 255] = 255  # the ignored background drawn dark in every panel
        return pal[lab]

    fig, axes = plt.subplots(n, 4, figsize=(8, 2 * n))
    for r in range(n):
        panels = [("image", imgs[r]), ("MaskCLIP", paint(mc[r], labs[r])), ("MaskCLIP+", paint(mp[r], labs[r])),
                  ("ground truth", paint(labs[r], labs[r]))]
        for c, (title, im) in enumerate(panels):
            axes[r, c].imshow(im)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def single_shape_scenes(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Scenes ``0 .. n-1`` of one shape each: ``(N, 3, H, W)`` normalised images, ``(N,)`` shape index into
    ``SHAPES``, captions ("a red star"); scenes whose placement failed ("an empty grey picture") are left out."""
    from forge.data.semseg.synthetic import SHAPES, render_scene

    imgs, labels, caps = [], [], []
    for i in range(n):
        img, _, cap = render_scene(np.random.default_rng([seed, i]), size, max_shapes=1)
        shape = cap.rsplit(" ", 1)[-1]
        if shape not in SHAPES:
            continue
        imgs.append(img)
        labels.append(SHAPES.index(shape))
        caps.append(cap)
    x = (torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() - MEAN) / STD
    return x, torch.tensor(labels), caps


@torch.no_grad()
def zero_shot_naming(clip, n: int, size: int, seed: int) -> dict:
    """The CLIP naming ``n`` single-shape scenes among the 30 captions "a {colour} {shape}": fraction right, colour
    right (chance 1/6), shape right (chance 1/5), and the mean text cosine of captions differing only in shape."""
    from open_clip.tokenizer import tokenize

    from forge.data.semseg.synthetic import COLOURS, SHAPES

    classes = [f"a {c} {s}" for c in COLOURS for s in SHAPES]
    x, _, caps = single_shape_scenes(n, size, seed)
    gt = [classes.index(c) for c in caps]
    was_training = clip.training
    clip.eval()
    text = clip.encode_text(tokenize(classes, context_length=clip.context_length), normalize=True)
    pred = (clip.encode_image(x, normalize=True) @ text.T).argmax(1).numpy()
    clip.train(was_training)
    gt, k = np.array(gt), len(SHAPES)
    t = text.view(len(COLOURS), k, -1)
    cos = (t @ t.transpose(1, 2))[:, ~torch.eye(k, dtype=torch.bool)].mean()
    return dict(images=len(gt), acc=float((pred == gt).mean()), colour=float((pred // k == gt // k).mean()),
                shape=float((pred % k == gt % k).mean()), shape_cos=float(cos))


def run(args) -> dict:
    from denseclip import MaskCLIP, build_text_classifier
    from forge.data.semseg.synthetic import COLOURS, SHAPES, make_batch

    log = (lambda m: print(m, flush=True)) if not args.silent else (lambda m: None)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    clip = train_clip(args, log)
    naming = zero_shot_naming(clip, args.val, args.size, seed=args.seed + 2000)
    log(f"CLIP zero-shot on single-shape scenes: {naming}")
    classes = list(COLOURS)
    templates = [f"a {{}} {s}" for s in SHAPES]
    emb = build_text_classifier(clip, classes, templates, cache=False)
    maskclip = MaskCLIP(clip, emb)
    vimgs, vlabs, _ = make_batch(args.seed + 1000, 0, args.val, args.size)
    c = len(classes)
    g = torch.Generator().manual_seed(0)
    chance, _ = evaluate(lambda x: list(torch.randint(0, c, (len(x), *x.shape[2:]), generator=g)), vimgs, vlabs, c)
    mc_miou, mc_preds = evaluate(lambda x: list(maskclip.predict(x)), vimgs, vlabs, c)
    log(f"chance mIoU {chance:.3f}, MaskCLIP mIoU {mc_miou:.3f}")
    plus, pre = train_plus(args, maskclip, log)

    def plus_predict(x):
        with torch.no_grad():
            logits = plus(pre.normalize(x), mode="tensor")
            return list(F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False).argmax(1))

    mp_miou, mp_preds = evaluate(plus_predict, vimgs, vlabs, c)
    log(f"MaskCLIP+ mIoU {mp_miou:.3f}")
    if args.save_dir:  # for benchmarks/denseclip_corruption.py: the CLIP file and the same val split on disk
        from denseclip.clip_loading import save_clip
        from forge.data.semseg.synthetic import write_semantic_split

        os.makedirs(args.save_dir, exist_ok=True)
        save_clip(clip, os.path.join(args.save_dir, "clip.pt"))
        write_semantic_split(os.path.join(args.save_dir, "val"), args.val, args.size, seed=args.seed + 1000)
    res = dict(chance=chance, naming=naming, maskclip=mc_miou, maskclip_plus=mp_miou, clip=clip.demo_stats,
               plus_seconds=plus.demo_seconds, plus_losses=plus.demo_losses, total_seconds=time.time() - t_start)
    if args.png:
        picture(args.png, vimgs, [p.numpy() for p in mc_preds], [p.numpy() for p in mp_preds], vlabs)
    return res


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--pool", type=int, default=3000, help="caption-image pairs for CLIP")
    p.add_argument("--clip-arch", choices=["vit", "rn"], default="rn")
    p.add_argument("--clip-steps", type=int, default=600)
    p.add_argument("--clip-minutes", type=float, default=12.0, help="wall-time cap of the CLIP training")
    p.add_argument("--clip-batch", type=int, default=64)
    p.add_argument("--clip-lr", type=float, default=5e-4, help="peak AdamW learning rate of the CLIP (cosine)")
    p.add_argument("--plus-pool", type=int, default=1000)
    p.add_argument("--plus-iters", type=int, default=300)
    p.add_argument("--plus-batch", type=int, default=8)
    p.add_argument("--self-train-frac", type=float, default=0.0,
                   help="switch to self-training after this fraction of the iterations (0: CLIP-guided throughout, "
                        "as the official annotation-free configs; the zero-shot rows use 0.1)")
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--png", default="docs/img/denseclip_demo.png")
    p.add_argument("--md", default="docs/benchmarks.md")
    p.add_argument("--save-dir", default="work_dirs/denseclip_demo", help="write clip.pt and the val split here")
    p.add_argument("--quick", action="store_true", help="the test suite's shortened run; writes no docs")
    p.add_argument("--silent", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        # step counts, not wall time, bound the quick run (deterministic on a shared machine)
        args.pool, args.clip_steps, args.clip_batch, args.plus_pool, args.plus_iters = 600, 40, 32, 100, 20
        args.clip_minutes, args.plus_batch = 60.0, 4
        args.val, args.png, args.md, args.save_dir = 48, None, None, None
    return args


def main(argv: list[str] | None = None) -> dict:
    from forge.docsection import machine_line, replace_section

    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    res = run(args)
    print(json.dumps({k: v for k, v in res.items() if k != "plus_losses"}, indent=1))
    if args.md:
        png_rel = os.path.relpath(args.png, os.path.dirname(os.path.abspath(args.md)))
        cs = res["clip"]
        body = "\n".join([
            f"Machine: {machine_line()}, {args.threads} thread(s). Total {res['total_seconds'] / 60:.1f} min: CLIP "
            f"{cs['steps']} steps of {args.clip_batch} pairs ({cs['seconds'] / 60:.1f} min, final loss "
            f"{cs['loss']:.2f}); MaskCLIP+ {args.plus_iters} iterations of {args.plus_batch} images "
            f"({res['plus_seconds'] / 60:.1f} min, "
            + (f"self-training from iteration {int(args.plus_iters * args.self_train_frac)})." if args.self_train_frac
               else "CLIP-guided throughout, as the official annotation-free configs)."),
            "",
            f"Synthetic semantic split: {args.val} scenes of {args.size} px, 6 colour classes, background ignored.",
            "",
            "| method | mIoU (%) |", "|---|---|",
            f"| chance (uniformly random labels) | {100 * res['chance']:.1f} |",
            f"| MaskCLIP (no training; ResNet CLIP, feature stride 32) | {100 * res['maskclip']:.1f} |",
            f"| MaskCLIP+ (DeepLabv2 on MaskCLIP's pseudo-labels, stride 8) | {100 * res['maskclip_plus']:.1f} |",
            "",
            f"The CLIP zero-shot on {res['naming']['images']} single-shape scenes among the 30 captions \"a "
            f"{{colour}} {{shape}}\": {100 * res['naming']['acc']:.1f} % right (chance 3.3), colour "
            f"{100 * res['naming']['colour']:.1f} % (chance 16.7), shape {100 * res['naming']['shape']:.1f} % "
            f"(chance 20); captions that differ only in shape have text cosine {res['naming']['shape_cos']:.3f} on "
            "average (make demo-ovsam needs shapes apart).",
            "",
            f"![image / MaskCLIP / MaskCLIP+ / ground truth]({png_rel})",
            "",
            f"Command: `{' '.join(['python benchmarks/denseclip_demo.py', *argv])}`",
        ])
        replace_section(args.md, SECTION, body, title=TITLE)
        print(f"wrote {args.png} and section {SECTION} of {args.md}")
    return res


if __name__ == "__main__":
    main()
