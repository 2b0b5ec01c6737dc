#!/usr/bin/env bash
# The test suite, from a fresh machine: set up .venv, then pytest. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INSTRUCT_SELECT_EXTRAS="dev,lmeval" source "$root/scripts/setup.sh"
cd "$root"
exec python -m pytest -q "$@"
