"""forge-eval: evaluate a detection result file against ground truth (COCO, LVIS, CrowdHuman).

Examples::

    forge-eval coco --gt instances_val2017.json --dt results.segm.json --iou segm --json metrics.json
    forge-eval lvis --gt lvis_v1_val.json --dt results.bbox.json --classwise
    forge-eval crowdhuman --gt annotation_val.odgt --dt results.odgt --box-type fbox

Prints a table; ``--json OUT`` writes every figure under the name the table shows (COCO/LVIS also ``stats``: the
summary numbers in pycocotools / lvis-api order, and ``per_class`` with ``--classwise``). Bad input files (missing,
unreadable, invalid JSON, a missing or ill-typed key, unknown ids: :data:`forge.evaluation.errors.INPUT_ERRORS`)
exit with code 2 and a one-line message naming the file and the problem; any other exception is a bug and keeps its
traceback. A progress bar is drawn on stderr when it is a terminal (not in CI / logs). The command imports neither
torch nor mmengine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forge-eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="{coco,lvis,crowdhuman}")
    for name, help_text in (
        ("coco", "COCO box/mask AP (pycocotools-exact, faster-coco-eval engine)"),
        ("lvis", "LVIS federated box/mask AP (lvis-api-exact)"),
        ("crowdhuman", "CrowdHuman AP / MR-2 / JI"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--gt", required=True, help="ground truth (COCO/LVIS json, CrowdHuman .odgt)")
        p.add_argument("--dt", required=True, help="detections (COCO result json; CrowdHuman result .odgt)")
        p.add_argument("--json", metavar="OUT", help="also write all figures to this json file")
        if name == "crowdhuman":
            p.add_argument("--box-type", default="fbox", choices=["fbox", "vbox", "hbox"], help="box to evaluate")
            p.add_argument("--id-map", help="COCO json (or {image_id: ID} json) mapping COCO-style result ids to IDs")
            p.add_argument("--category-ids", type=int, nargs="+", help="COCO result categories that are people")
            p.add_argument("--matching", default="blossom", choices=["blossom", "hungarian"],
                           help="JI matching: blossom (CrowdDet, default) or hungarian (ties may differ)")
            p.add_argument("--mr-sampling", default="crowddet", choices=["crowddet", "noh"],
                           help="MR-2 sampling: crowddet (first FPPI >= ref, default) or noh (NOH-NMS's code)")
        else:
            p.add_argument("--iou", default="bbox", choices=["bbox", "segm"], help="IoU type (default bbox)")
            p.add_argument("--classwise", action="store_true", help="also print/write per-category AP")
        if name == "lvis":
            p.add_argument("--max-dets", type=int, default=300, help="detections kept per image (300)")
    return parser


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays -> Python; nan -> None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _run(args: argparse.Namespace) -> tuple[str, dict]:
    from forge.evaluation.errors import check_input_file

    for path in (args.gt, args.dt, getattr(args, "id_map", None)):
        if path is not None:
            check_input_file(path)
    if args.benchmark == "crowdhuman":
        from forge.evaluation.crowdhuman import evaluate_files, format_table

        results = evaluate_files(
            args.gt,
            args.dt,
            box_type=args.box_type,
            id_map=args.id_map,
            category_ids=args.category_ids,
            matching=args.matching,
            mr_sampling=args.mr_sampling,
        )
        return format_table(results), dict(results)

    from forge.evaluation.coco import COCO_SUMMARY_NAMES, evaluate_coco, format_classwise_table, format_coco_table

    if args.benchmark == "coco":
        res = evaluate_coco(args.gt, args.dt, args.iou, classwise=args.classwise)
        names = COCO_SUMMARY_NAMES
    else:
        from forge.evaluation.lvis import LVIS_SUMMARY_NAMES, evaluate_lvis

        res = evaluate_lvis(args.gt, args.dt, args.iou, max_dets=args.max_dets, classwise=args.classwise)
        names = LVIS_SUMMARY_NAMES
    title = f"{args.benchmark} {args.iou}: {res['num_images']} images, {res['num_detections']} detections"
    text = format_coco_table(res, names, title=title)
    if args.classwise:
        text += "\n\n" + format_classwise_table(res["per_class"])
    out = {n: res[n] for n in names}
    out["stats"] = res["stats"]
    if args.classwise:
        out["per_class"] = res["per_class"]
    return text, out


def main(argv: list[str] | None = None) -> None:
    from forge.evaluation.errors import INPUT_ERRORS

    args = _parser().parse_args(argv)
    try:
        text, figures = _run(args)
    except INPUT_ERRORS as err:  # only errors about the user's files; anything else is a bug: traceback
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"forge-eval: error: {msg}", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # e.g. `forge-eval ... | head`
        sys.stderr.close()
    if args.json:
        try:
            with open(args.json, "w") as f:
                json.dump(_jsonable(figures), f, indent=2)
        except OSError as err:
            print(f"forge-eval: error: cannot write {args.json}: {err.strerror}", file=sys.stderr)
            sys.exit(2)


if __name__ == "__main__":
    main()
