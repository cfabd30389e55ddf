#!/usr/bin/env bash
# Distributed training with torchrun, single or multi node.
#   tools/dist_train.sh NPROC_PER_NODE [hydra overrides...]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 PORT=29500 tools/dist_train.sh 8 experiment=...   (on each node)
# Every rank gets the same explicit run folder, so Hydra's per-rank timestamps never split a run.
set -euo pipefail
NPROC=${1:?usage: tools/dist_train.sh NPROC_PER_NODE [overrides...]}
shift
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-29500}
PYTHON=${PYTHON:-python}
ENTRY=${ENTRY:-forge.cli.train}
# one folder for all ranks: the caller's work_dir=..., else the experiment's default folder
WORK_DIR=""
for arg in "$@"; do
  case "$arg" in work_dir=*) WORK_DIR="${arg#work_dir=}";; esac
done
EXTRA=()
if [ -n "$WORK_DIR" ]; then
  EXTRA+=("hydra.run.dir=$WORK_DIR")
fi
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$NPROC" \
  --master_addr="$MASTER_ADDR" --master_port="$PORT" \
  -m "$ENTRY" launcher=torchrun "$@" "${EXTRA[@]}"
