#!/usr/bin/env bash
# Run a long command in the background on a shared 2-core machine: niced (19), in its own process
# group, its output appended to LOG, and paused (SIGSTOP) while a *measurement* holds or waits on
# /tmp/is-heavy.lock (any holder whose command line does not mention pytest), so timings taken under
# the lock stay quiet. The long runs here are resumable (every stage is cached), so a kill loses
# at most the stage in progress. Usage:
#     dev/background.sh LOG command args...
# e.g. (the mixture benchmark from a frozen worktree, so edits in the checkout cannot reach it):
#     git worktree add --detach /work/mixrun HEAD && cd /work/mixrun && \
#     dev/background.sh /work/runs/mixture.log /work/main/.venv/bin/python -m instruct_select \
#         experiment mixture --data-dir ../shared/data/real --run-dir /work/runs/mixture \
#         --out /work/runs/mixture_results.md
set -euo pipefail
log=$1; shift
echo "=== $(date -u) $(git rev-parse --short HEAD 2>/dev/null || true): $*" >> "$log"
setsid nice -n 19 "$@" >> "$log" 2>&1 &
group=$!
echo "$group" > "$log.pid"

measurement_holds_lock() {
    local p
    for p in $(pgrep -f "^flock /tmp/is-heavy.lock" || true); do
        [[ "$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)" == *pytest* ]] || return 0
    done
    return 1
}

(
    stopped=0
    while kill -0 "$group" 2>/dev/null; do
        if measurement_holds_lock; then
            [[ $stopped == 0 ]] && { kill -STOP -"$group"; stopped=1; echo "$(date -u +%T) paused: a measurement holds the lock" >> "$log"; }
        elif [[ $stopped == 1 ]]; then
            kill -CONT -"$group"; stopped=0; echo "$(date -u +%T) resumed" >> "$log"
        fi
        sleep 3
    done
    echo "$(date -u +%T) process group $group ended" >> "$log"
) > /dev/null 2>&1 &
disown
echo "started process group $group; log: $log"
