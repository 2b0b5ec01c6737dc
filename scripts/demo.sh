#!/usr/bin/env bash
# The lab demo, from a fresh machine: set up .venv, build the lab (cached), select, fine-tune,
# evaluate every capability and print the comparison table. Extra arguments go to `demo`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
exec instruct-select demo "$@"
