#!/usr/bin/env bash
# The GPU check: the CUDA-marked tests, every stage on SmolLM2-135M-Instruct in bfloat16 (and
# float32 to compare), features' throughput as a fraction of plain training, peak memory per
# stage, and with 2+ GPUs a 2-process NCCL run equal to the 1-process run. Prints one table (the
# parts are in benchmarks/gpu_check.py); exits non-zero on any failure. Under 8 minutes on one GPU.
#
#     bash scripts/gpu_check.sh            # from the repository root, after scripts/setup.sh
#
# On a machine without a CUDA GPU it says so in one line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch on this machine; nothing to check"
    exit 0
fi
exec timeout "${GPU_CHECK_TIMEOUT:-470}" "$PYTHON" benchmarks/gpu_check.py "$@"
