#!/usr/bin/env bash
# Evaluation on SLURM:  tools/slurm_test.sh PARTITION JOB_NAME WORK_DIR checkpoint=... [overrides...]
set -euo pipefail
ENTRY=forge.cli.test exec "$(dirname "$0")/slurm_train.sh" "$@"
