#!/usr/bin/env bash
# Training on SLURM with srun, one task per GPU:
#   tools/slurm_train.sh PARTITION JOB_NAME WORK_DIR [overrides...]      (GPUS=16 GPUS_PER_NODE=8 CPUS_PER_TASK=8)
# Ranks come from SLURM's variables (launcher=slurm); all tasks share WORK_DIR.
set -euo pipefail
PARTITION=${1:?usage: tools/slurm_train.sh PARTITION JOB_NAME WORK_DIR [overrides...]}
JOB_NAME=${2:?job name}
WORK_DIR=${3:?work dir}
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-8}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}
ENTRY=${ENTRY:-forge.cli.train}
srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS \
  "$PYTHON" -u -m "$ENTRY" launcher=slurm work_dir="$WORK_DIR" hydra.run.dir="$WORK_DIR" "$@"
