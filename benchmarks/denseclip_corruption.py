"""mIoU per ImageNet-C corruption and severity through ``forge-test ... corruption.name=N corruption.severity=S``
(MaskCLIP's robustness study, paper Sec. 4.4 / its ``configs/maskclip/corrupt``).

    python benchmarks/denseclip_corruption.py --experiment denseclip/maskclip_vit16_context59 \\
        --checkpoint pretrain/ViT-B-16.pt [--set dataset.root=...] [--md docs/benchmarks.md]

Every cell is one ``forge-test`` run (``forge.cli.test.run_test`` in this process, so the text classifier is
encoded once and read from its cache afterwards). ``--md`` writes the table into its section of that file
(``denseclip-corruption``); without it the table is printed only. ``make demo-denseclip`` runs it on the demo's
CLIP and synthetic split.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

SECTION = "denseclip-corruption"
TITLE = "## DenseCLIP: MaskCLIP mIoU under ImageNet-C corruptions"


def forge_test(experiment: str, checkpoint: str, work_dir: str, overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir

    from forge.cli.common import CONFIG_DIR
    from forge.cli.test import run_test

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="test", overrides=[f"experiment={experiment}", f"checkpoint={checkpoint}",
                                                     f"work_dir={work_dir}", "runtime.vis.tensorboard=false",
                                                     *overrides])
    return run_test(cfg)


def table(results: dict, corruptions: list[str], severities: list[int], key: str) -> str:
    head = "| corruption | " + " | ".join(f"severity {s}" for s in severities) + " | mean |"
    lines = [head, "|---" * (len(severities) + 2) + "|"]
    lines.append(f"| none (clean) | {100 * results['clean'][key]:.1f} |" + " |" * len(severities))
    for name in corruptions:
        vals = [100 * results[(name, s)][key] for s in severities]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {sum(vals) / len(vals):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    from forge.data.corruptions import CORRUPTIONS
    from forge.docsection import machine_line, replace_section

    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--set", action="append", default=[], help="extra key=value overrides of forge-test")
    p.add_argument("--corruptions", default=",".join(CORRUPTIONS))
    p.add_argument("--severities", default="1,2,3,4,5")
    p.add_argument("--work-root", default="work_dirs/denseclip_corruption")
    p.add_argument("--metric", default="semseg/mIoU")
    p.add_argument("--md", default=None, help="write the table into this Markdown file's section")
    p.add_argument("--note", default="", help="a line put above the table (what the model and data are)")
    args = p.parse_args(argv)
    corruptions = [c for c in args.corruptions.split(",") if c]
    severities = [int(s) for s in args.severities.split(",")]
    t0 = time.time()
    results: dict = {"clean": forge_test(args.experiment, args.checkpoint, os.path.join(args.work_root, "clean"),
                                         args.set)}
    for name in corruptions:
        for s in severities:
            work = os.path.join(args.work_root, f"{name}{s}")
            over = [*args.set, f"corruption.name={name}", f"corruption.severity={s}"]
            results[(name, s)] = forge_test(args.experiment, args.checkpoint, work, over)
            print(f"{name} {s}: {args.metric} {results[(name, s)][args.metric]:.4f}", flush=True)
    text = table(results, corruptions, severities, args.metric)
    print(text)
    if args.md:
        cmd = "python benchmarks/denseclip_corruption.py " + " ".join(argv)
        body = "\n".join([
            *([args.note, ""] if args.note else []),
            f"{args.metric} (%) of `{args.experiment}`, each corruption applied to the test image as loaded, before "
            f"the test resize (as MaskCLIP's `Corrupt` step). {machine_line()}; {(time.time() - t0) / 60:.1f} min.",
            "", text, "", f"Command: `{cmd}`"])
        replace_section(args.md, SECTION, body, title=TITLE)
        print(f"wrote section {SECTION} of {args.md}")
    return text


if __name__ == "__main__":
    main()
