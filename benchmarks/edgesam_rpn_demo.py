"""EdgeSAM's region-proposal module for single-point prompts, measured the paper's way on the synthetic shapes set.

The paper (Sec. 3.3) trains a class-agnostic detector on the frozen encoder of a trained EdgeSAM and, for a single
click, gives SAM the box merged from the proposals nearest the click with the point: COCO centre-point mIoU
48.0 -> 54.3. Here, on a CPU, with the student of the distillation demo (``make demo-edgesam``):

1. copy the student checkpoint (``--student``; default the newest ``work_dirs/edgesam/demo/phase2`` one) into
   ``--work-dir`` (the demo may be re-run meanwhile);
2. ``forge-train experiment=edgesam/rpn_shapes_student``: the FCOS head on the student's frozen encoder; its
   validation gives ``proposal/AR@100`` (100 proposals after NMS, IoU 0.5:0.95) on the shapes val split;
3. ``forge-test`` of the student on the val split: ``edgesam/eval_shapes_center_point`` (centre click alone),
   ``edgesam/eval_shapes_center_point_rpn`` (centre click + merged proposal box, the official merge rule) and, for
   reference, the same with GT-box prompts (``model.mode=box``);
4. writes section ``edgesam-rpn`` of ``--md`` (docs/benchmarks.md).

    python benchmarks/edgesam_rpn_demo.py                  # about 4 minutes at 1 thread
    python benchmarks/edgesam_rpn_demo.py --quick --student FILE --no-docs   # seconds-scale smoke version
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from forge.cli.child_run import run_forge_test, run_forge_train
from forge.docsection import machine_line, replace_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "edgesam-rpn"
TITLE = "## edgesam: region proposals for single-point prompts (shapes set, CPU demo student)"
CALLER = "edgesam_rpn_demo"


def demo_student(demo_dir: str) -> str:
    """The last checkpoint of the distillation demo's phase 2 under ``demo_dir`` (its ``last_checkpoint`` file)."""
    marker = os.path.join(demo_dir, "phase2", "last_checkpoint")
    if not os.path.isfile(marker):
        raise SystemExit(f"{CALLER}: no student checkpoint: {marker} does not exist; run `make demo-edgesam` first "
                         "or pass --student FILE")
    with open(marker) as f:
        path = f.read().strip()
    if not os.path.isfile(path):
        raise SystemExit(f"{CALLER}: {marker} names {path}, which does not exist")
    return path


def ensure_data(root: str, num_train: int, num_val: int, size: int) -> dict:
    """The shapes set at ``root``: generated when absent, else used as it is (the demo's student was trained on it;
    regenerating it under another demo's feet would change it). Returns its parameters (``shapes_meta.json``)."""
    from forge.data.shapes import META_FILE, ensure_shapes

    if not all(os.path.isfile(os.path.join(root, "annotations", f"instances_{s}.json")) for s in ("train", "val")):
        ensure_shapes(root, num_train, num_val, size)
    meta = os.path.join(root, META_FILE)
    if not os.path.isfile(meta):
        return {}
    with open(meta) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.join(os.environ.get("FORGE_DATA", "data"), "shapes_edgesam"))
    p.add_argument("--size", type=int, default=128, help="the student's input side (the demo's --size)")
    p.add_argument("--train", type=int, default=600, help="train images, if the set must be generated")
    p.add_argument("--val", type=int, default=50, help="val images, if the set must be generated")
    p.add_argument("--student", default=None, help="the student checkpoint (default: the demo's last phase-2 one)")
    p.add_argument("--demo-dir", default="work_dirs/edgesam/demo")
    p.add_argument("--rpn-iters", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default="work_dirs/edgesam/rpn_demo")
    p.add_argument("--md", default="docs/benchmarks.md")
    p.add_argument("--no-docs", action="store_true", help="do not write --md")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (2 RPN iterations; needs --student)")
    args = p.parse_args(argv)
    if args.quick:
        args.train, args.val, args.size, args.rpn_iters, args.batch = 8, 4, 64, 2, 2
    data = os.path.abspath(args.data)
    shapes = ensure_data(data, args.train, args.val, args.size)
    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    source = os.path.abspath(args.student or demo_student(args.demo_dir))
    student = os.path.join(work, "student.pth")
    if source != student:
        shutil.copy2(source, student)
    t0 = time.time()
    common = [f"dataset.root={data}", f"runtime.num_threads={args.threads}", "schedule.num_workers=0"]
    rpn = run_forge_train("edgesam/rpn_shapes_student", os.path.join(work, "rpn"),
                          common + [f"pipeline.img_size={args.size}", f"model.encoder_checkpoint={student}",
                                    f"schedule.max_iters={args.rpn_iters}",
                                    f"schedule.warmup_iters={max(1, min(50, args.rpn_iters // 10))}",
                                    f"schedule.batch_size={args.batch}", f"schedule.val_batch_size={args.batch}"],
                          args.threads, CALLER, cwd=ROOT)
    ev = common + [f"checkpoint={student}", f"model.sam.image_encoder.img_size={args.size}",
                   f"schedule.batch_size={args.batch}"]
    runs = {
        "point": run_forge_test("edgesam/eval_shapes_center_point", os.path.join(work, "eval_point"), ev,
                                args.threads, CALLER, cwd=ROOT),
        "point_rpn": run_forge_test("edgesam/eval_shapes_center_point_rpn", os.path.join(work, "eval_point_rpn"),
                                    ev + [f"model.rpn_checkpoint={rpn['checkpoint']}"], args.threads, CALLER,
                                    cwd=ROOT),
        "box": run_forge_test("edgesam/eval_shapes_center_point", os.path.join(work, "eval_box"),
                              ev + ["model.mode=box"], args.threads, CALLER, cwd=ROOT),
    }
    total = time.time() - t0
    m_rpn, m_with = rpn["metrics"], runs["point_rpn"]["metrics"]
    out = dict(ar100=m_rpn["proposal/AR@100"], recall50=m_rpn["proposal/recall@0.5"],
               miou_point=runs["point"]["metrics"]["prompt/mIoU"], miou_point_rpn=m_with["prompt/mIoU"],
               miou_box=runs["box"]["metrics"]["prompt/mIoU"],
               stats={k.removeprefix("rpn_prompt/"): v for k, v in m_with.items() if k.startswith("rpn_prompt/")},
               rpn_checkpoint=rpn["checkpoint"], student=source, seconds=total)
    s = out["stats"]
    print(f"RPN: AR@100 {out['ar100']:.3f}, recall@0.5 {out['recall50']:.3f} ({rpn['seconds']:.0f} s)")
    print(f"centre-point mIoU: {out['miou_point']:.3f} without, {out['miou_point_rpn']:.3f} with the RPN "
          f"(GT box: {out['miou_box']:.3f}); clicks inside a proposal {s['hit']:.3f}, merged-box IoU {s['box_iou']:.3f}"
          f"; mIoU with a box {s['mIoU_hit']:.3f}, without {s['mIoU_miss']:.3f}; total {total / 60:.1f} min")
    if not args.no_docs:
        cmd = " ".join(["python benchmarks/edgesam_rpn_demo.py", *(argv if argv is not None else sys.argv[1:])])
        meta = ", ".join(f"{k} {v}" for k, v in shapes.items()) or "parameters unknown"
        body = "\n".join([
            f"Machine: {machine_line()}. Command: `{cmd.strip()}` ({total / 60:.1f} min in all).",
            "",
            f"Student: `{os.path.relpath(source, ROOT)}` (the CPU distillation demo's RepViT, "
            f"[edgesam-demo](#edgesam-cpu-distillation-demo-shapes-teacher---repvit-student-both-phases)), copied "
            f"to the work dir. Shapes set `{os.path.relpath(data, ROOT)}` ({meta}). RPN: FCOS head (FPN 64 wide) on "
            f"the student's frozen encoder, `forge-train experiment=edgesam/rpn_shapes_student`, {args.rpn_iters} "
            f"iterations of {args.batch} images ({rpn['seconds']:.0f} s). Prompts: every val instance, single-mask "
            "output, mIoU against the original GT masks (`forge-test experiment=edgesam/eval_shapes_center_point"
            "[_rpn]`); merge rule as the official evaluation (scores > 0.1, no NMS, proposals strictly containing "
            "the click, the 5 nearest centres, the top score; none -> the point with not-a-point box tokens).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| RPN proposal AR@100 (IoU 0.5:0.95) / recall@0.5, val | {out['ar100']:.3f} / {out['recall50']:.3f} |",
            f"| centre-point mIoU, without the RPN | {out['miou_point']:.3f} |",
            f"| centre-point mIoU, with the RPN (paper, COCO: 48.0 -> 54.3) | {out['miou_point_rpn']:.3f} |",
            f"| clicks strictly inside a proposal scored > 0.1 | {s['hit']:.3f} |",
            f"| merged box vs GT box: mean IoU (hits) / share of clicks with IoU >= 0.5 | {s['box_iou']:.3f} / "
            f"{s['box_iou@0.5']:.3f} |",
            f"| with the RPN: mIoU of the clicks with a box / without one | {s['mIoU_hit']:.3f} / "
            f"{s['mIoU_miss']:.3f} |",
            f"| reference: GT-box prompts | {out['miou_box']:.3f} |",
        ])
        replace_section(args.md, SECTION, body, title=TITLE)
    return out


if __name__ == "__main__":
    main()
