#!/usr/bin/env bash
# Create .venv (once) and install the project into it. Sourced by demo.sh and test.sh.
# torch is installed first, pinned to the CPU build this machine kind provides, so that no later
# requirement pulls a multi-GB CUDA build. Re-running is cheap: pip only checks what is there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(cat "$root/pyproject.toml" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "torch==${INSTRUCT_SELECT_TORCH:-2.13.0}"
    "$venv/bin/pip" install --quiet -e "$root[dev]"
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
