#!/usr/bin/env bash
# `make demo-yolact`: YOLACT end to end on the CPU, no download.
#   1. generate the synthetic shapes set (1000 train / 100 val images, 256 px) into ${FORGE_DATA:-data}/shapes,
#      unless it is already there with these parameters;
#   2. train experiment yolact/shapes (ResNet-18-FPN YOLACT from scratch, about 10 minutes on 2 cores) and evaluate
#      COCO box and mask AP on the val split;
#   3. draw the trained model's predictions on a few val images (forge-infer yolact) into the run's folder.
# Extra arguments go to forge-train, e.g.  tools/demo_yolact.sh schedule.max_iters=100
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
BIN=$VENV/bin
DATA=${FORGE_DATA:-data}/shapes
TRAIN=${SHAPES_TRAIN:-1000}
VAL=${SHAPES_VAL:-100}
SIZE=256
WORK=${WORK_DIR:-work_dirs/yolact/shapes}
NUM_DRAW=${NUM_DRAW:-6}

# 1. data (shapes_meta.json records how an existing set was generated)
if ! "$BIN/python" - "$DATA" "$TRAIN" "$VAL" "$SIZE" <<'EOF'
import json, os, sys
root, want = sys.argv[1], dict(zip(("train", "val", "size"), map(int, sys.argv[2:])))
try:
    with open(os.path.join(root, "shapes_meta.json")) as f:
        meta = json.load(f)
except (OSError, ValueError):
    sys.exit(1)
files = [os.path.join(root, "annotations", f"instances_{s}.json") for s in ("train", "val")]
sys.exit(0 if all(meta.get(k) == v for k, v in want.items()) and all(map(os.path.isfile, files)) else 1)
EOF
then
    echo "== generating the shapes set in $DATA ($TRAIN train / $VAL val images, $SIZE px)"
    "$BIN/forge-make-shapes" "$DATA" --train "$TRAIN" --val "$VAL" --size "$SIZE"
else
    echo "== using the shapes set in $DATA ($TRAIN train / $VAL val images, $SIZE px)"
fi

# 2. train + evaluate
echo "== training yolact/shapes into $WORK"
start=$(date +%s)
"$BIN/forge-train" experiment=yolact/shapes dataset.root="$DATA" work_dir="$WORK" "$@"
took=$(( $(date +%s) - start ))

# 3. predictions drawn on a few val images
ckpt=$(cat "$WORK/last_checkpoint")
mapfile -t images < <(ls "$DATA"/val/*.png | head -n "$NUM_DRAW")
echo "== drawing predictions on ${#images[@]} val images"
"$BIN/forge-infer" yolact "${images[@]}" --checkpoint "$ckpt" --out "$WORK/predictions" --score-thr 0.3

"$BIN/python" - "$WORK" "$took" <<'EOF'
import glob, json, os, sys
work, took = sys.argv[1], int(sys.argv[2])
m = json.load(open(os.path.join(work, "metrics.json")))
def get(k):
    v = m.get(f"coco/{k}")
    return "n/a" if v is None else f"{v:.3f}"
print("=" * 72)
print(f"yolact/shapes: train + eval {took // 60} min {took % 60} s")
print(f"mask AP {get('segm_mAP')}  AP50 {get('segm_mAP_50')}  AP75 {get('segm_mAP_75')}   (target: mask AP50 >= 0.5)")
print(f"box  AP {get('bbox_mAP')}  AP50 {get('bbox_mAP_50')}  AP75 {get('bbox_mAP_75')}")
print(f"run folder     {os.path.abspath(work)}  (config.yaml, metrics.json, checkpoints, plots/)")
print(f"predictions    {os.path.abspath(os.path.join(work, 'predictions'))}/*.png")
vis = sorted(glob.glob(os.path.join(work, "*", "vis_data", "vis_image", "*.png")))
if vis:
    print(f"val grid       {os.path.abspath(vis[-1])}  (ground truth | predictions)")
print("=" * 72)
EOF
