#!/usr/bin/env bash
# Distributed evaluation with torchrun:  tools/dist_test.sh NPROC_PER_NODE checkpoint=... [overrides...]
set -euo pipefail
ENTRY=forge.cli.test exec "$(dirname "$0")/dist_train.sh" "$@"
