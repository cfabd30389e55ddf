"""`make demo-edgesam`: EdgeSAM's two-phase distillation end to end on a CPU, with a teacher that knows something.

1. generate the synthetic shapes set (``forge.data.shapes``) at ``--size`` px, unless it is there;
2. train a small SAM teacher (ViT encoder, experiment ``edgesam/shapes_teacher``) on GT masks with box and point
   prompts; its GT-box mIoU against GT must reach ``--target`` (0.7), else the demo stops and says so;
3. phase 1 (``edgesam/shapes_phase1``): a small RepViT student regresses the teacher's embeddings;
4. phase 2 (``edgesam/shapes_phase2``): prompt-in-the-loop distillation from the phase-1 checkpoint;
5. prints the student's GT-box mIoU against GT and against the teacher after each phase, draws teacher vs student
   masks on validation images (``--figure``) and writes its section of ``--md`` (docs/benchmarks.md).

Every phase is one ``forge-train`` run (the shared runner); the numbers are the runs' own validation metrics
(``metrics.json``: ``prompt/mIoU`` against GT, ``teacher/mIoU`` against the teacher's masks for the same prompts).

    python benchmarks/edgesam_demo.py                      # the full demo (about 20 minutes on 2 free cores)
    python benchmarks/edgesam_demo.py --quick --no-docs    # seconds-scale smoke version (the test suite's)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from forge.cli.child_run import run_forge_train
from forge.docsection import machine_line, replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "edgesam-demo"
TITLE = "## edgesam: CPU distillation demo (shapes teacher -> RepViT student, both phases)"


def train(experiment: str, work_dir: str, overrides: list[str], threads: int) -> dict:
    """One forge-train run; returns its metrics.json, the checkpoint and the wall time."""
    return run_forge_train(experiment, work_dir, overrides, threads, "edgesam_demo", cwd=ROOT)


def draw(cfg_paths: dict[str, str], checkpoints: dict[str, str], out: str, num_images: int = 4) -> None:
    """Val images with GT-box prompts: GT | teacher | student after phase 1 | after phase 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from forge.data.collate import collate_detection
    from forge.inference import safe_load

    cols = ["ground truth", "teacher (ViT)", "student, phase 1", "student, phase 2"]
    panels = {}
    for key in ("phase1", "phase2"):
        cfg = OmegaConf.load(cfg_paths[key])
        model = instantiate(cfg.model, _convert_="partial").eval()
        state = safe_load(checkpoints[key])["state_dict"]
        model.load_state_dict(state)
        ds = instantiate(cfg.dataset.val, _convert_="partial")
        items = [ds[i] for i in range(num_images)]
        data = model.data_preprocessor(collate_detection(items), False)
        with torch.no_grad():
            records = model(**data, mode="predict")
        panels[key] = records
        images = [it["inputs"].permute(1, 2, 0).numpy().astype(np.uint8) for it in items]
    fig, axes = plt.subplots(num_images, 4, figsize=(10, 2.6 * num_images))
    rng = np.random.default_rng(0)
    for r in range(num_images):
        rec1, rec2 = panels["phase1"][r], panels["phase2"][r]
        sets = [rec1["gt_masks"], rec1["teacher_masks"], rec1["pred_masks"], rec2["pred_masks"]]
        colours = rng.uniform(0.2, 1.0, (len(rec1["gt_masks"]), 3))
        for c, masks in enumerate(sets):
            img = images[r].astype(np.float32) / 255
            h, w = img.shape[:2]
            for m, col in zip(masks.numpy(), colours):
                img[m[:h, :w]] = 0.45 * img[m[:h, :w]] + 0.55 * col
            ax = axes[r, c]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
    fig.suptitle("EdgeSAM demo: GT-box prompts on shapes val images", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.join(os.environ.get("FORGE_DATA", "data"), "shapes_edgesam"))
    p.add_argument("--size", type=int, default=128, help="image and model input side")
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--val", type=int, default=50)
    p.add_argument("--teacher-iters", type=int, default=2400)
    p.add_argument("--phase1-iters", type=int, default=400)
    p.add_argument("--phase2-iters", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-per-image", type=int, default=16)
    p.add_argument("--teacher-init", default=None,
                   help="start the teacher from this checkpoint (e.g. an earlier, shorter teacher run) and train it on")
    p.add_argument("--target", type=float, default=None,
                   help="the teacher's GT-box mIoU goal (0.7; --quick: 0); a teacher below it is reported (and, with "
                        "--strict, not distilled)")
    p.add_argument("--strict", action="store_true", help="exit when the teacher is below --target")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default="work_dirs/edgesam/demo")
    p.add_argument("--figure", default="docs/img/edgesam_demo.png")
    p.add_argument("--md", default="docs/benchmarks.md")
    p.add_argument("--no-docs", action="store_true", help="do not write --md")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (no target, no figure unless asked)")
    args = p.parse_args(argv)
    if args.quick:
        args.train, args.val, args.size = 8, 4, 64
        args.teacher_iters, args.phase1_iters, args.phase2_iters, args.batch = 2, 2, 2, 2
    if args.target is None:
        args.target = 0.0 if args.quick else 0.7
    from forge.data.shapes import ensure_shapes

    ensure_shapes(args.data, args.train, args.val, args.size)
    common = [f"dataset.root={os.path.abspath(args.data)}", f"pipeline.img_size={args.size}",
              f"schedule.batch_size={args.batch}", f"schedule.val_batch_size={args.batch}",
              f"runtime.num_threads={args.threads}", "schedule.num_workers=0"]
    work = os.path.abspath(args.work_dir)
    runs, t0 = {}, time.time()

    def iters(n: int, warmup: int = 50) -> list[str]:
        return [f"schedule.max_iters={n}", f"schedule.warmup_iters={max(1, min(warmup, n // 10))}"]

    runs["teacher"] = train("edgesam/shapes_teacher", os.path.join(work, "teacher"),
                            common + iters(args.teacher_iters, 100) + [f"model.max_per_image={args.max_per_image}"]
                            + ([f"model.checkpoint={os.path.abspath(args.teacher_init)}"] if args.teacher_init else []),
                            args.threads)
    t_miou = runs["teacher"]["metrics"]["prompt/mIoU"]
    print(f"teacher: GT-box mIoU vs GT {t_miou:.3f} ({runs['teacher']['seconds']:.0f} s)", flush=True)
    below = t_miou < args.target
    if below:
        msg = (f"edgesam_demo: the teacher reached GT-box mIoU {t_miou:.3f} < --target {args.target} "
               "(train it longer with --teacher-iters, or --teacher-init to continue this run)")
        if args.strict:
            raise SystemExit(msg)
        print(msg + "; distilling it anyway", flush=True)
    teacher_ckpt = f"model.teacher.checkpoint={runs['teacher']['checkpoint']}"
    runs["phase1"] = train("edgesam/shapes_phase1", os.path.join(work, "phase1"),
                           common + iters(args.phase1_iters) + [teacher_ckpt], args.threads)
    runs["phase2"] = train("edgesam/shapes_phase2", os.path.join(work, "phase2"),
                           common + iters(args.phase2_iters) + [teacher_ckpt,
                                                                f"model.student_checkpoint={runs['phase1']['checkpoint']}",
                                                                f"model.max_per_image={args.max_per_image}"],
                           args.threads)
    rows = []
    for key, name in (("phase1", "after phase 1 (encoder KD)"), ("phase2", "after phase 2 (prompt-in-the-loop KD)")):
        m = runs[key]["metrics"]
        rows.append((name, m["prompt/mIoU"], m["teacher/mIoU"], runs[key]["seconds"]))
        print(f"student {name}: GT-box mIoU vs GT {m['prompt/mIoU']:.3f}, vs teacher {m['teacher/mIoU']:.3f} "
              f"({runs[key]['seconds']:.0f} s)", flush=True)
    total = time.time() - t0
    print(f"total {total / 60:.1f} min")
    if args.figure and not args.quick:
        draw({k: os.path.join(work, k, "config.yaml") for k in ("phase1", "phase2")},
             {k: runs[k]["checkpoint"] for k in ("phase1", "phase2")}, args.figure)
        print(f"figure: {args.figure}")
    if not args.no_docs:
        cmd = " ".join(["python benchmarks/edgesam_demo.py", *(argv if argv is not None else sys.argv[1:])]).strip()
        body = "\n".join([
            f"Machine: {machine_line()}. Command: `{cmd}` ({total / 60:.1f} min in all).",
            "",
            f"Shapes set at {args.size} px ({args.train} train / {args.val} val images); GT-box prompts on every val "
            "instance, single-mask output, mIoU in the network-input frame. Teacher: small SAM (ViT, "
            f"`edgesam/shapes_teacher`, {args.teacher_iters} iterations of {args.batch} images"
            + (f", starting from `{args.teacher_init}`" if args.teacher_init else "") + "); student: small "
            f"RepViT (`edgesam/shapes_phase1`, {args.phase1_iters} iterations; `edgesam/shapes_phase2`, "
            f"{args.phase2_iters} iterations).",
            "",
            "| model | mIoU vs GT | mIoU vs teacher | train time |",
            "|---|---|---|---|",
            f"| teacher | {t_miou:.3f} | - | {runs['teacher']['seconds']:.0f} s |",
            *(f"| student {n} | {a:.3f} | {b:.3f} | {s:.0f} s |" for n, a, b, s in rows),
            "",
            *([f"**The teacher is below the demo's goal of GT-box mIoU >= {args.target}** ({t_miou:.3f}); the "
               "student rows distil this teacher.", ""] if below else []),
            f"![teacher vs student]({os.path.relpath(args.figure, os.path.dirname(args.md))})" if args.figure else "",
        ])
        replace_section(args.md, SECTION, body, title=TITLE)
    return dict(teacher=t_miou, below_target=below, rows=rows, runs=runs)


if __name__ == "__main__":
    main()
