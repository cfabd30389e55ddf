"""``make demo-ovsam``: Open-Vocabulary SAM's two stages on a CPU, from the small CLIP of ``make demo-denseclip`` and
the small SAM of ``make demo-edgesam``.

1. write the coloured-shapes instance set (:mod:`ovsam.shapes`): scenes of the CLIP's training kind, classes
   "red circle" ... (6 colours x 5 shapes); every class with a held-out word (``--held-out``, default ``orange`` and
   ``cross``) is absent from the training annotations;
2. SAM2CLIP (experiment ``ovsam/sam2clip_shapes``, one ``forge-train`` run): the frozen CLIP's ResNet features
   regressed onto the SAM teacher's embeddings; validation feature MSE before (the run's seeded initialisation)
   and after, beside the MSE of the teacher's mean embedding;
3. CLIP2SAM (``ovsam/clip2sam_shapes``, one ``forge-train`` run) on the base classes;
4. evaluation on every validation instance with its GT box as the prompt, the vocabulary of all 30 classes and
   the official fusion (base classes head^0.9 * clip^0.1, the others head^0.1 * clip^0.9): accuracy and mask IoU
   on base and on held-out classes, the head alone and the frozen CLIP alone, chance (1 / 30) beside; then the
   same through ``forge-test experiment=ovsam/eval_shapes_box``, which must agree to 1e-5 (the two float32 means
   differ by ~1e-6; one label more or less moves an accuracy by 1 / instances, 0.005 or more here);
5. a figure (``--figure``) and the section ``ovsam-demo`` of ``--md``.

Inputs are consumed by path: ``--clip`` (default ``work_dirs/denseclip_demo/clip.pt``) and ``--teacher`` (default
the ``last_checkpoint`` of ``work_dirs/edgesam/demo/teacher``); a missing teacher is trained here with the edgesam
demo's teacher stage (``forge-train experiment=edgesam/shapes_teacher``), a missing CLIP with
``benchmarks/denseclip_demo.py`` (no docs written). ``--quick`` is the test suite's run: a seeded untrained CLIP, a
2-iteration teacher, a few iterations of each stage, no docs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from forge.cli.child_run import run_forge_test, run_forge_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "ovsam-demo"
TITLE = "## ovsam: CPU demo (SAM2CLIP distillation, CLIP2SAM with held-out vocabulary words)"


def forge_train(experiment: str, work_dir: str, overrides: list[str], threads: int) -> dict:
    """One ``forge-train`` run; returns its metrics (if it validated), last checkpoint and wall time."""
    return run_forge_train(experiment, work_dir, [f"runtime.num_threads={threads}", *overrides], threads,
                           "ovsam_demo", cwd=ROOT)


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ensure_inputs(args) -> tuple[str, str, list[str]]:
    """The CLIP file and the teacher checkpoint (made here when absent), and notes on where they came from."""
    notes = []
    clip = os.path.abspath(args.clip) if args.clip else ""
    if args.quick and not args.clip:  # a seeded, untrained CLIP of the denseclip demo's shape
        from denseclip.clip_loading import save_clip

        torch.manual_seed(0)
        clip = os.path.join(os.path.abspath(args.work_dir), "clip_untrained.pt")
        os.makedirs(os.path.dirname(clip), exist_ok=True)
        save_clip(_load_script("denseclip_demo").tiny_clip(args.size, "rn"), clip)
        notes.append("untrained seeded CLIP")
    elif not os.path.isfile(clip):
        print(f"no CLIP at {clip}: training it with benchmarks/denseclip_demo.py", flush=True)
        save_dir = os.path.dirname(clip)
        subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "denseclip_demo.py"), "--md", "",
                        "--png", "", "--save-dir", save_dir, "--threads", str(args.threads)], cwd=ROOT, check=True)
        clip = os.path.join(save_dir, "clip.pt")
        notes.append("CLIP trained by this run (benchmarks/denseclip_demo.py)")
    teacher = args.teacher
    if teacher and os.path.isfile(teacher) and os.path.basename(teacher) == "last_checkpoint":
        teacher = open(teacher).read().strip()
    metrics = os.path.join(os.path.dirname(teacher or "."), "metrics.json")
    if teacher and os.path.isfile(teacher) and os.path.isfile(metrics):
        notes.append(f"teacher GT-box mIoU {json.load(open(metrics)).get('prompt/mIoU', float('nan')):.3f} on "
                     "the edgesam shapes val set")
    if not teacher or not os.path.isfile(teacher):
        from forge.data.shapes import ensure_shapes

        n_train, n_val, iters = (8, 4, 2) if args.quick else (600, 50, 600)
        data = os.path.join(os.path.abspath(args.data) + "_edgesam_teacher")
        ensure_shapes(data, n_train, n_val, args.size)
        print(f"no teacher at {args.teacher}: training it (experiment edgesam/shapes_teacher, {iters} iterations)")
        run = forge_train("edgesam/shapes_teacher", os.path.join(os.path.abspath(args.work_dir), "teacher"),
                          [f"dataset.root={data}", f"pipeline.img_size={args.size}", f"schedule.max_iters={iters}",
                           f"schedule.warmup_iters={max(1, min(50, iters // 10))}", "schedule.num_workers=0"],
                          args.threads)
        teacher = run["checkpoint"]
        notes.append(f"teacher trained by this run ({iters} iterations, GT-box mIoU "
                     f"{run['metrics'].get('prompt/mIoU', float('nan')):.3f})")
    return clip, os.path.abspath(teacher), notes


def teacher_architecture(teacher: str) -> tuple[int | None, list[str]]:
    """The SAM architecture of the teacher's run (its ``config.yaml`` beside the checkpoint, ``model.sam``) as
    overrides of the demo configs' copy, and its input size; ``(None, [])`` when the run's config is not there."""
    from omegaconf import OmegaConf

    cfg_file = os.path.join(os.path.dirname(teacher), "config.yaml")
    if not os.path.isfile(cfg_file):
        return None, []
    sam = OmegaConf.to_container(OmegaConf.load(cfg_file).model.sam, resolve=True)

    def leaves(node, path):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{path}.{k}")
            elif k != "_target_":
                yield f"++{path}.{k}={json.dumps(v) if isinstance(v, list) else v}"

    return int(sam["image_encoder"]["img_size"]), list(leaves(sam, "model"))


def ensure_data(args, base: list[str], classes: list[str]) -> str:
    """The instance set under ``--data`` (rewritten when its parameters differ)."""
    from ovsam.shapes import write_instance_split

    root = os.path.abspath(args.data)
    meta = dict(train=args.train, val=args.val, size=args.size, seed=args.seed, base=base, classes=classes)
    meta_file = os.path.join(root, "ovsam_shapes_meta.json")
    if os.path.isfile(meta_file) and json.load(open(meta_file)) == meta:
        return root
    write_instance_split(root, "train", args.train, args.size, 2000 + args.seed, base)
    write_instance_split(root, "val", args.val, args.size, 3000 + args.seed, classes)
    with open(meta_file, "w") as f:
        json.dump(meta, f)
    return root


def _build(config_file: str, checkpoint: str | None, seed: int):
    """The model of a run's saved config, seeded as the runner seeds it, then (optionally) its checkpoint."""
    from hydra.utils import instantiate
    from mmengine.runner import set_random_seed
    from omegaconf import OmegaConf

    from forge.inference import safe_load

    cfg = OmegaConf.load(config_file)
    set_random_seed(seed)
    model = instantiate(cfg.model, _convert_="partial")
    if checkpoint:
        model.load_state_dict(safe_load(checkpoint)["state_dict"])
    return cfg, model.eval()


def _val_batches(cfg, model, batch: int = 8):
    from hydra.utils import instantiate

    from forge.data.collate import collate_detection

    ds = instantiate(cfg.dataset.val, _convert_="partial")
    for i in range(0, len(ds), batch):
        items = [ds[j] for j in range(i, min(i + batch, len(ds)))]
        yield items, model.data_preprocessor(collate_detection(items), False)


def feature_mse(config_file: str, checkpoint: str | None, seed: int) -> dict:
    """``FeatureMSEMetric`` on the val split for the run's model at its initialisation or a checkpoint."""
    from ovsam.metric import FeatureMSEMetric

    cfg, model = _build(config_file, checkpoint, seed)
    metric = FeatureMSEMetric()
    with torch.no_grad():
        for _, data in _val_batches(cfg, model):
            metric.process(None, model(**data, mode="predict"))
    return metric.compute_metrics(metric.results)


@torch.no_grad()
def evaluate_clip2sam(config_file: str, checkpoint: str, clip_path: str, classes: list[str], base: list[str],
                      templates: list[str], keep: int = 0) -> dict:
    """GT-box prompts on every val instance, vocabulary ``classes``: per instance the fused / head / CLIP label
    and the mask IoU; summarised for base and held-out classes. ``keep`` images are returned for the figure."""
    from denseclip import build_text_classifier
    from denseclip.clip_loading import load_clip
    from ovsam.fusion import top_labels

    cfg, trainer = _build(config_file, checkpoint, 0)
    model = trainer.model
    classifier = build_text_classifier(load_clip(None, clip_path), classes, templates, cache=False)
    base_mask = torch.tensor([c in base for c in classes])
    rows, shown = [], []
    for items, data in _val_batches(cfg, trainer):
        for k, s in enumerate(data["data_samples"]):
            if s.gt is None or len(s.gt.labels) == 0:
                continue
            boxes = s.gt.boxes.float()
            pred = model.predict(data["inputs"][k:k + 1], classifier, boxes=boxes, base=base_mask)
            h, w = s.meta.img_shape
            masks = F.interpolate(pred.low_res_masks, size=(model.input_size,) * 2, mode="bilinear",
                                  align_corners=False)[:, 0, :h, :w] > 0
            gt = s.gt.masks.bool()[:, :h, :w]
            inter = (masks & gt).flatten(1).sum(1).float()
            union = (masks | gt).flatten(1).sum(1).float().clamp_min(1)
            fused = top_labels(pred.scores, 1)[1][:, 0]
            head = pred.head_logits[:, :-1].argmax(1)
            clip = pred.clip_logits[:, :-1].argmax(1)
            for j, lab in enumerate(s.gt.labels.tolist()):
                (gc, gs), (pc, ps) = classes[lab].split(), classes[int(fused[j])].split()
                rows.append(dict(label=lab, base=bool(base_mask[lab]), iou=float(inter[j] / union[j]),
                                 fused=int(fused[j]), head=int(head[j]), clip=int(clip[j]), colour=pc == gc,
                                 shape=ps == gs))
            if len(shown) < keep:
                shown.append(dict(image=items[k]["inputs"].permute(1, 2, 0).numpy().astype(np.uint8),
                                  boxes=boxes.numpy(), masks=masks.numpy(), gt=s.gt.labels.numpy(),
                                  pred=fused.numpy()))
    out = {}
    for split, sel in (("base", True), ("novel", False)):
        r = [x for x in rows if x["base"] == sel]
        out[split] = dict(n=len(r), miou=float(np.mean([x["iou"] for x in r])) if r else float("nan"),
                          **{m: float(np.mean([x[m] == x["label"] for x in r])) if r else float("nan")
                             for m in ("fused", "head", "clip")},
                          **{m: float(np.mean([x[m] for x in r])) if r else float("nan") for m in ("colour", "shape")})
    out["chance"] = 1.0 / len(classes)
    # can the CLIP's text tower tell the classes apart? cosine of classes differing only in shape / only in colour
    cos = classifier @ classifier.T
    words = [c.split() for c in classes]
    for key, same in (("cos_same_colour", 0), ("cos_same_shape", 1)):
        sel = torch.tensor([[a[same] == b[same] and a != b for b in words] for a in words])
        out[key] = (float(cos[sel].mean()), float(cos[sel].min()))
    return dict(summary=out, shown=shown)


def forge_test_crosscheck(work: str, checkpoint: str, sam2clip: str, teacher: str, clip: str, base: list[str],
                          novel: list[str], arch: list[str], common: list[str], threads: int, summ: dict) -> dict:
    """The same evaluation through ``forge-test experiment=ovsam/eval_shapes_box`` (``OVSAMEvaluator`` +
    ``PromptSegMetric``); its base / held-out accuracy and mIoU must equal the script's (else this exits)."""
    names = lambda xs: json.dumps(list(xs))  # noqa: E731 -- Hydra reads JSON lists of quoted names
    run = run_forge_test("ovsam/eval_shapes_box", os.path.join(work, "eval_shapes_box"),
                         [f"checkpoint={checkpoint}", *[a for a in common if a.startswith(("dataset.", "pipeline."))],
                          f"model.model.clip_path={clip}", f"model.model.sam2clip_checkpoint={sam2clip}",
                          f"model.model.sam.checkpoint={teacher}", f"model.base_classes={names(base)}",
                          f"model.novel_classes={names(novel)}", f"dataset.evaluator.0.novel_classes={names(novel)}",
                          f"runtime.num_threads={threads}", "schedule.num_workers=0"]
                         + [a.replace("++model.", "++model.model.sam.model.", 1) for a in arch], threads, "ovsam_demo",
                         cwd=ROOT)
    m = run["metrics"]
    pairs = {("base", "fused"): "prompt/acc_base", ("novel", "fused"): "prompt/acc_novel",
             ("base", "miou"): "prompt/mIoU_base", ("novel", "miou"): "prompt/mIoU_novel"}
    diff = max(abs(summ[split][key] - m[metric]) for (split, key), metric in pairs.items())
    print("forge-test ovsam/eval_shapes_box: " + ", ".join(f"{v} {m[v]:.4f}" for v in pairs.values())
          + f"; largest difference to the script's evaluation {diff:.2e}", flush=True)
    if diff > 1e-5:  # float32 means differ by ~1e-6; one label more or less moves an accuracy by >= 0.005
        raise SystemExit(f"ovsam_demo: forge-test's evaluation differs from the script's by {diff:.3g}")
    return dict(metrics={v: m[v] for v in pairs.values()}, diff=diff, seconds=run["seconds"])


def draw(shown: list[dict], classes: list[str], novel: list[str], path: str) -> None:
    """Val images: GT-box prompts, predicted masks and fused labels (green right, red wrong; * held-out class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(shown))
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, shown):
        img = s["image"].astype(np.float32) / 255
        for m in s["masks"]:
            img[m] = 0.4 * img[m] + 0.6 * rng.uniform(0.3, 1.0, 3)
        ax.imshow(img)
        for box, g, p in zip(s["boxes"], s["gt"], s["pred"]):
            x0, y0, x1, y1 = box
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=1))
            name = classes[p] + ("*" if classes[p] in novel else "")
            ax.text(x0, max(y0 - 1, 6), name, fontsize=7, color="white",
                    bbox=dict(fc="green" if p == g else "red", alpha=0.8, pad=1, lw=0))
    fig.suptitle("OVSAM demo: GT-box prompts -> CLIP2SAM masks and labels (30-class vocabulary; * held out of "
                 "training; red = wrong)", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse(argv: list[str]):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="work_dirs/denseclip_demo/clip.pt", help="CLIP file (make demo-denseclip)")
    p.add_argument("--teacher", default="work_dirs/edgesam/demo/teacher/last_checkpoint",
                   help="SAM teacher checkpoint (make demo-edgesam), or a run's last_checkpoint file")
    p.add_argument("--data", default=os.path.join(os.environ.get("FORGE_DATA", "data"), "ovsam_shapes"))
    p.add_argument("--size", type=int, default=128, help="image side = the teacher's input size")
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--held-out", default="orange,cross", help="words whose classes are held out of training")
    p.add_argument("--sam2clip-iters", type=int, default=1000)
    p.add_argument("--clip2sam-iters", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default="work_dirs/ovsam/demo")
    p.add_argument("--figure", default="docs/img/ovsam_demo.png")
    p.add_argument("--md", default="docs/benchmarks.md")
    p.add_argument("--quick", action="store_true", help="the test suite's run: tiny inputs, a few iterations, no docs")
    args = p.parse_args(argv)
    if args.quick:
        args.train, args.val, args.sam2clip_iters, args.clip2sam_iters, args.batch = 16, 8, 3, 3, 4
        for key in ("md", "figure"):  # no docs unless asked for
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, "")
        if args.clip == p.get_default("clip"):
            args.clip = ""
        if args.teacher == p.get_default("teacher"):
            args.teacher = ""
    return args


def main(argv: list[str] | None = None) -> dict:
    from forge.docsection import machine_line, replace_section
    from ovsam.shapes import TEMPLATES, colour_shape_classes, split_vocabulary

    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    classes = colour_shape_classes()
    held_out = [w for w in args.held_out.split(",") if w]
    base, novel = split_vocabulary(classes, held_out)
    clip, teacher, notes = ensure_inputs(args)
    size, arch = teacher_architecture(teacher)
    if size is not None and size != args.size:  # the scenes are rendered at the teacher's input size
        print(f"the teacher's input size is {size}: --size {args.size} -> {size}", flush=True)
        args.size = size
    data = ensure_data(args, base, classes)
    work = os.path.abspath(args.work_dir)
    common = [f"dataset.root={data}", f"pipeline.img_size={args.size}", f"schedule.batch_size={args.batch}",
              f"schedule.val_batch_size={args.batch}", f"model.clip_path={clip}", f"seed={args.seed}"]

    def iters(n: int) -> list[str]:
        return [f"schedule.max_iters={n}", f"schedule.warmup_iters={max(1, min(50, n // 10))}"]

    s2c = forge_train("ovsam/sam2clip_shapes", os.path.join(work, "sam2clip"),
                      common + iters(args.sam2clip_iters) + [f"model.teacher.checkpoint={teacher}"]
                      + [a.replace("++model.", "++model.teacher.model.", 1) for a in arch], args.threads)
    before = feature_mse(os.path.join(work, "sam2clip", "config.yaml"), None, args.seed)
    after = s2c["metrics"]
    print(f"SAM2CLIP val feature MSE: {before['mse']:.4f} at initialisation -> {after['distill/mse']:.4f} after "
          f"{args.sam2clip_iters} iterations (teacher's mean embedding: {after['distill/mse_mean_embedding']:.4f}; "
          f"{s2c['seconds']:.0f} s)", flush=True)
    c2s = forge_train("ovsam/clip2sam_shapes", os.path.join(work, "clip2sam"),
                      common + iters(args.clip2sam_iters) + [f"model.sam2clip_checkpoint={s2c['checkpoint']}",
                                                             f"model.sam.checkpoint={teacher}"]
                      + [a.replace("++model.", "++model.sam.model.", 1) for a in arch], args.threads)
    ev = evaluate_clip2sam(os.path.join(work, "clip2sam", "config.yaml"), c2s["checkpoint"], clip, classes, base,
                           list(TEMPLATES), keep=0 if not args.figure else 8)
    summ = ev["summary"]
    ft = forge_test_crosscheck(work, c2s["checkpoint"], s2c["checkpoint"], teacher, clip, base, novel, arch,
                               common, args.threads, summ)
    for split in ("base", "novel"):
        r = summ[split]
        print(f"CLIP2SAM {split}: {r['n']} instances, accuracy fused {r['fused']:.3f} / head {r['head']:.3f} / "
              f"CLIP {r['clip']:.3f} (colour {r['colour']:.3f}, shape {r['shape']:.3f}), mask mIoU "
              f"{r['miou']:.3f} (chance accuracy {summ['chance']:.3f})")
    total = time.time() - t0
    print(f"total {total / 60:.1f} min ({c2s['seconds']:.0f} s CLIP2SAM training)", flush=True)
    if args.figure:
        draw(ev["shown"], classes, novel, args.figure)
        print(f"figure: {args.figure}")
    res = dict(mse_before=before["mse"], mse_after=after["distill/mse"],
               mse_mean=after["distill/mse_mean_embedding"], summary=summ, seconds=total,
               sam2clip=s2c, clip2sam=c2s, forge_test=ft, base=base, novel=novel)
    if args.md:
        cmd = " ".join(["python benchmarks/ovsam_demo.py", *argv]).strip()
        pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
        b, n = summ["base"], summ["novel"]
        body = "\n".join([
            f"Machine: {machine_line()}, {args.threads} threads. Command: `{cmd}` ({total / 60:.1f} min in all: "
            f"SAM2CLIP {s2c['seconds']:.0f} s, CLIP2SAM {c2s['seconds']:.0f} s).",
            "",
            f"Inputs: CLIP `{os.path.relpath(clip, ROOT)}` (make demo-denseclip), SAM teacher "
            f"`{os.path.relpath(teacher, ROOT)}` (make demo-edgesam)" + (f"; {'; '.join(notes)}" if notes else "")
            + f". Coloured-shapes scenes at {args.size} px ({args.train} train / {args.val} val), 30 classes "
            f"(6 colours x 5 shapes); held-out words {', '.join(held_out)}: {len(novel)} classes never annotated in "
            f"training, {len(base)} base classes.",
            "",
            f"SAM2CLIP (`ovsam/sam2clip_shapes`, {args.sam2clip_iters} iterations of {args.batch}): val feature MSE "
            f"to the teacher's embeddings",
            "",
            "| SAM2CLIP | val MSE |", "|---|---|",
            f"| at initialisation (the run's seed) | {before['mse']:.4f} |",
            f"| teacher's mean embedding (best constant) | {after['distill/mse_mean_embedding']:.4f} |",
            f"| after distillation | {after['distill/mse']:.4f} |",
            "",
            f"CLIP2SAM (`ovsam/clip2sam_shapes`, {args.clip2sam_iters} iterations of {args.batch}, base classes "
            "only): GT-box prompts on every val instance, vocabulary of all 30 classes, the official fusion "
            "(base classes head^0.9 clip^0.1, held-out ones head^0.1 clip^0.9).",
            "",
            "| classes | instances | accuracy fused (%) | head only | frozen CLIP only | chance | fused: colour right "
            "(chance 16.7) | fused: shape right (chance 20.0) | mask mIoU (%) |",
            "|---|---|---|---|---|---|---|---|---|",
            *(f"| {name} | {r['n']} | {pct(r['fused'])} | {pct(r['head'])} | {pct(r['clip'])} | "
              f"{pct(summ['chance'])} | {pct(r['colour'])} | {pct(r['shape'])} | {pct(r['miou'])} |"
              for name, r in ((f"base ({len(base)})", b), (f"held out ({len(novel)})", n))),
            "",
            f"The same evaluation through `forge-test experiment=ovsam/eval_shapes_box` (OVSAMEvaluator, "
            f"PromptSegMetric): accuracy base {pct(ft['metrics']['prompt/acc_base'])} / held out "
            f"{pct(ft['metrics']['prompt/acc_novel'])}, mIoU {pct(ft['metrics']['prompt/mIoU_base'])} / "
            f"{pct(ft['metrics']['prompt/mIoU_novel'])}; largest difference to the table {ft['diff']:.1e}.",
            "",
            "The CLIP's text embeddings (template \"a {}\"): classes that differ only in shape have cosine "
            f"{summ['cos_same_colour'][0]:.4f} on average (minimum {summ['cos_same_colour'][1]:.4f}), classes that "
            f"differ only in colour {summ['cos_same_shape'][0]:.3f}.",
            "",
            f"![GT-box prompts, CLIP2SAM masks and labels]({os.path.relpath(args.figure, os.path.dirname(args.md))})"
            if args.figure else "",
        ])
        replace_section(args.md, SECTION, body, title=TITLE)
        print(f"wrote section {SECTION} of {args.md}")
    return res


if __name__ == "__main__":
    main()
