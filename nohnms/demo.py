"""``make demo-nohnms`` / ``python -m nohnms.demo``: NOH-NMS end to end on the CPU, no download.

1. generate the synthetic crowded-pedestrian set (:mod:`forge.data.crowd_synth`) into
   ``${FORGE_DATA:-data}/crowd_synth`` unless it is there with the same parameters;
2. train ``experiment=nohnms/crowd_synth`` (ResNet-18-FPN Faster R-CNN with the hallucinator, from scratch);
3. run the trained network once over the val split and apply greedy NMS and NOH-NMS to the **same** candidates;
   print AP, recall and MR^-2 of both (the CrowdHuman evaluator on full-body boxes) and the recall of crowded persons
   (those overlapping another person with IoU > 0.5), and why MR^-2 moves (:func:`diagnosis`: the miss rate at each
   FPPI point, what the false positives are, what NOH-NMS adds, where the hallucinated neighbours lie);
4. with ``--record``: write the table into ``docs/benchmarks.md`` (section ``nohnms-demo``) and a crowded val image
   under both NMS to ``docs/img/nohnms_demo.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "nohnms-demo"
TITLE = "## NOH-NMS demo: greedy NMS vs NOH-NMS on synthetic crowds (`make demo-nohnms`)"


def compose(overrides: Sequence[str]):
    """The demo's training config (``experiment=nohnms/crowd_synth`` plus ``overrides``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import forge.config  # noqa: F401  (registers the forge.* resolvers)
    from forge.cli.common import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=["experiment=nohnms/crowd_synth", *overrides])


@torch.no_grad()
def candidates_on(net, dataset, batch_size: int = 4) -> list[tuple]:
    """``[(DetSample, candidates dict)]`` for every image of ``dataset`` (one network pass each)."""
    from forge.data.collate import collate_detection

    out = []
    for start in range(0, len(dataset), batch_size):
        batch = collate_detection([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        data = net.data_preprocessor(batch, False)
        cands = net(data["inputs"], data["data_samples"], mode="tensor")
        out += list(zip(data["data_samples"], cands, strict=True))
    return out


def evaluate_nms(net, pairs: list[tuple], ann_file: str, nms: str) -> tuple[dict, dict, list, dict]:
    """CrowdHuman AP / recall / MR^-2 of ``nms`` on the candidates, ``{ID: NohDetections}``, the detection records
    and ``{ID: kept candidate indices}``."""
    from forge.data.crowdhuman_reader import DTRecord, read_gt_odgt
    from forge.evaluation.crowdhuman import evaluate

    from .model import apply_nms

    dts, preds, kept = [], {}, {}
    for sample, cand in pairs:
        keep, scores = apply_nms(cand, nms, net.nms_iou, net.noh_score_threshold, net.max_det)
        pred = net.to_original(cand, keep, scores, sample.meta)
        key = sample.meta.extra["ID"]
        preds[key], kept[key] = pred, keep
        xywh = pred.boxes.double().numpy().copy()
        xywh[:, 2:] -= xywh[:, :2]
        h, w = sample.meta.ori_shape
        dts.append(DTRecord(ID=key, boxes=xywh, scores=pred.scores.double().numpy(), width=w, height=h))
    gts = [g for g in read_gt_odgt(ann_file) if g.ID in preds]
    return evaluate(gts, dts, box_type="fbox"), preds, dts, kept


def crowded_recall(gts, preds: dict, iou: float = 0.5, score: float = 0.5) -> tuple[int, int]:
    """``(found, total)`` over persons whose full-body IoU with another person is ``> iou``: found when a detection
    scoring ``>= score`` overlaps it with IoU ``>= iou`` (each detection credited once, best score first)."""
    from forge.ops import box_iou

    found = total = 0
    for g in gts:
        keep = ~g.ignore
        boxes = torch.from_numpy(g.boxes("fbox")[keep]).float()
        if boxes.shape[0] < 2 or g.ID not in preds:
            continue
        boxes[:, 2:] += boxes[:, :2]
        pair = box_iou(boxes, boxes).fill_diagonal_(0)
        crowded = pair.max(dim=1).values > iou
        total += int(crowded.sum())
        p = preds[g.ID]
        det = p.boxes[p.scores >= score]
        if det.shape[0] == 0:
            continue
        m = box_iou(det, boxes)  # (D, G), detections by decreasing score
        taken = torch.zeros(boxes.shape[0], dtype=torch.bool)
        for row in m:
            row = row.masked_fill(taken, -1)
            j = int(row.argmax())
            if row[j] >= iou:
                taken[j] = True
        found += int((taken & crowded).sum())
    return found, total


def picture(pairs: list[tuple], greedy: dict, noh: dict, gts, path: str, score: float = 0.5) -> str:
    """Save the val image where NOH-NMS finds the most crowded persons that greedy NMS loses, both side by side."""
    from PIL import Image, ImageDraw

    from .infer import draw_detections

    best, gain = None, -1
    for g in gts:
        if g.ID not in greedy:
            continue
        a = crowded_recall([g], {g.ID: noh[g.ID]}, score=score)[0] - crowded_recall([g], {g.ID: greedy[g.ID]},
                                                                                     score=score)[0]
        if a > gain:
            best, gain = g.ID, a
    sample = next(s for s, _ in pairs if s.meta.extra["ID"] == best)
    image = np.asarray(Image.open(sample.meta.file_name).convert("RGB"))
    panels = []
    for name, preds in (("greedy NMS", greedy), ("NOH-NMS", noh)):
        p = preds[best]
        im = Image.fromarray(draw_detections(image, p, score, neighbours=name == "NOH-NMS"))
        d = ImageDraw.Draw(im)
        d.rectangle([0, 0, im.width, 14], fill=(0, 0, 0))
        d.text((4, 1), f"{name}: {int((p.scores >= score).sum())} boxes >= {score}", fill=(255, 255, 255))
        panels.append(im)
    out = Image.new("RGB", (sum(p.width for p in panels) + 8, panels[0].height), (255, 255, 255))
    out.paste(panels[0], (0, 0))
    out.paste(panels[1], (panels[0].width + 8, 0))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out.save(path)
    return best


def evaluate_run(work_dir: str):
    """The run's last checkpoint over its val split, once, then greedy NMS and NOH-NMS on the same candidates.

    Returns ``(pairs, {nms: results}, {nms: {ID: NohDetections}}, GT records, run config,
    {nms: (detection records, {ID: kept candidate indices})})``."""
    from hydra.utils import instantiate

    from forge.data.crowdhuman_reader import read_gt_odgt
    from forge.inference import load_model

    with open(os.path.join(work_dir, "last_checkpoint")) as f:
        ckpt = f.read().strip()
    net, run_cfg = load_model(ckpt, os.path.join(work_dir, "config.yaml"))
    net.eval()
    val = instantiate(run_cfg.dataset.val, _convert_="partial")
    pairs = candidates_on(net, val)
    ann = run_cfg.dataset.val.ann_file
    res, preds, records = {}, {}, {}
    for nms in ("greedy", "noh"):
        res[nms], preds[nms], *rec = evaluate_nms(net, pairs, ann, nms)
        records[nms] = tuple(rec)
    gts = [g for g in read_gt_odgt(ann) if g.ID in preds["greedy"]]
    return pairs, res, preds, gts, run_cfg, records


def diagnosis(pairs: list[tuple], gts, records: dict) -> list[str]:
    """Markdown lines: the miss rate at MR^-2's nine FPPI points, what the false positives up to FPPI 1 are, what
    NOH-NMS adds to greedy NMS, and where the hallucinated neighbours lie (:mod:`nohnms.diagnose`)."""
    from forge.evaluation.crowdhuman.apmr import MR_REFS

    from .diagnose import added_detections, hallucination_stats, miss_at_refs
    from .model import NohNmsRCNN

    n_img = len(gts)
    lines = ["| miss rate at FPPI | " + " | ".join(f"{r:g}" for r in MR_REFS) + " | false positives up to FPPI 1: "
             "duplicates (IoU > 0.5 with a found person) / poorly localised |",
             "|---|" + "---:|" * (len(MR_REFS) + 1)]
    for nms, name in (("greedy", "greedy"), ("noh", "NOH-NMS")):
        miss, fp_iou = miss_at_refs(gts, records[nms][0])
        top = fp_iou[:n_img]
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in miss)
                     + f" | {int((top > 0.5).sum())} / {int((top <= 0.5).sum())} |")
    add = added_detections(gts, records["noh"][0], records["noh"][1], records["greedy"][1])
    hi = add["scores"] >= 0.5
    gmap = {g.ID: g for g in gts}
    boxes, hal, gtb = [], [], []
    for sample, cand in pairs:
        keep = torch.nonzero(cand["scores"] > 0.5).squeeze(1)
        d = NohNmsRCNN.to_original(cand, keep, cand["scores"][keep], sample.meta)
        g = gmap[sample.meta.extra["ID"]]
        b = torch.from_numpy(g.boxes("fbox")[~g.ignore]).float()
        b[:, 2:] += b[:, :2]
        boxes.append(d.boxes)
        hal.append(d.overlap_boxes)
        gtb.append(b)
    h = hallucination_stats(boxes, hal, gtb)
    lines += ["", f"NOH-NMS keeps {add['scores'].shape[0]} boxes that greedy NMS removes: {int(add['tp'].sum())} true "
              f"positives, {int(add['fp'].sum())} false positives; scoring >= 0.5 after easing: "
              f"{int((add['tp'] & hi).sum())} true / {int((add['fp'] & hi).sum())} false."]
    if h["n"]:
        lines.append(
            f"Hallucinated neighbours of the {h['n']} boxes (score > 0.5) that have a real neighbour (IoU > 0.4): "
            f"median IoU {h['own_iou']:.2f} with their own box (the real neighbour's: {h['true_iou']:.2f}); median "
            f"horizontal offset {h['hal_offset']:.2f} box widths (real: {h['true_offset']:.2f}); on the real "
            f"neighbour's side {100 * h['same_side']:.0f}% of the time.")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nohnms.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(os.environ.get("FORGE_DATA", "data"), "crowd_synth"))
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--val", type=int, default=300)  # 300: FPPI 0.01, MR^-2's first point, is 3 false positives
    p.add_argument("--work-dir", default="work_dirs/nohnms/crowd_synth")
    p.add_argument("--record", action="store_true", help="write docs/benchmarks.md and docs/img/nohnms_demo.png")
    p.add_argument("--skip-train", action="store_true", help="evaluate the checkpoint already in --work-dir")
    p.add_argument("overrides", nargs="*", help="forge-train overrides, e.g. schedule.max_iters=50")
    a = p.parse_args(argv)

    from forge.data.crowd_synth import crowd_synth_ready, make_crowd_synth

    params = dict(train=a.train, val=a.val, width=320, height=240, seed=0, ignore_prob=0.5)
    if crowd_synth_ready(a.data, **params):
        print(f"== using the synthetic crowd set in {a.data} ({a.train} train / {a.val} val)")
    else:
        print(f"== generating the synthetic crowd set in {a.data} ({a.train} train / {a.val} val)")
        make_crowd_synth(a.data, a.train, a.val)
    cfg = compose([f"dataset.root={os.path.abspath(a.data)}", f"work_dir={a.work_dir}", "runtime.vis.tensorboard=false",
                   *a.overrides, *([] if a.skip_train else ["overwrite=true"])])
    start = time.time()
    if not a.skip_train:
        from forge.cli.train import run_train

        print(f"== training nohnms/crowd_synth into {a.work_dir}")
        run_train(cfg)
        took = time.time() - start
    else:  # a run trained earlier: from its config (written first) to its last checkpoint (written last)
        with open(os.path.join(a.work_dir, "last_checkpoint")) as f:
            took = os.path.getmtime(f.read().strip()) - os.path.getmtime(os.path.join(a.work_dir, "config.yaml"))

    t0 = time.time()
    pairs, res, preds, gts, run_cfg, records = evaluate_run(a.work_dir)
    crowd = {k: crowded_recall(gts, v) for k, v in preds.items()}
    rows = ["| NMS | AP (%) | recall (%) | MR^-2 (%) | crowded persons found (score >= 0.5) |",
            "|---|---:|---:|---:|---:|"]
    for nms, name in (("greedy", "greedy (IoU 0.5)"), ("noh", "NOH-NMS")):
        r = res[nms]
        f, t = crowd[nms]
        rows.append(f"| {name} | {100 * r['AP']:.1f} | {100 * r['recall']:.1f} | {100 * r['MR-2']:.1f} | "
                    f"{f} / {t} ({100 * f / max(t, 1):.1f}%) |")
    print("=" * 72)
    print(f"nohnms/crowd_synth: train {took / 60:.1f} min, evaluation {time.time() - t0:.0f} s, "
          f"{len(pairs)} val images")
    print("\n".join(rows))
    diag = diagnosis(pairs, gts, records)
    print("\n".join(diag))
    ok = res["noh"]["recall"] > res["greedy"]["recall"] and res["noh"]["MR-2"] <= res["greedy"]["MR-2"]
    print(f"NOH-NMS recall up at equal or better MR^-2: {'yes' if ok else 'NO'}")
    print("=" * 72)
    if a.record:
        from forge.docsection import machine_line, replace_section

        img = os.path.join(ROOT, "docs", "img", "nohnms_demo.png")
        shown = picture(pairs, preds["greedy"], preds["noh"], gts, img)
        iters = int(run_cfg.schedule.max_iters)
        body = "\n".join([
            f"`make demo-nohnms` (`python -m nohnms.demo --record`): {a.train} train / {a.val} val synthetic crowd "
            f"images (320 x 240, `forge.data.crowd_synth`), ResNet-18-FPN Faster R-CNN with the hallucinator from "
            f"scratch, {iters} iterations of batch {int(run_cfg.schedule.batch_size)} ({took / 60:.1f} min), then "
            "greedy NMS and NOH-NMS on the same candidates of one network pass. CrowdHuman evaluator, full-body "
            "boxes.", "", *rows, "", *diag, "",
            f"Target (NOH-NMS recall up at equal or better MR^-2): {'met' if ok else 'not met'} (what moves MR^-2: "
            "`docs/nohnms.md`, \"Demo diagnosis\").", "",
            f"Machine: {machine_line()}.", "",
            f"![greedy NMS (left) vs NOH-NMS (right) on val image {shown}; dashed: hallucinated neighbours]"
            "(img/nohnms_demo.png)"])
        replace_section(os.path.join(ROOT, "docs", "benchmarks.md"), SECTION, body, title=TITLE)
        print(f"recorded in docs/benchmarks.md ({SECTION}) and {img}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
