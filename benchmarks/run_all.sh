#!/usr/bin/env bash
# Runs every benchmark in one go and prints the figures (also saved under benchmarks/results/).
#   bash benchmarks/run_all.sh            # everything (the scan with pylint takes minutes)
#   QUICK=1 bash benchmarks/run_all.sh    # fewer repetitions, no peers
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
mkdir -p benchmarks/results
LOG=benchmarks/results/run_all.log
: > "$LOG"
run() { echo "\$ $*" | tee -a "$LOG"; "$@" 2>&1 | grep -v -E "^(INFO|DEBUG)" | tee -a "$LOG"; echo | tee -a "$LOG"; }
echo "gradpath benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
git log -1 --format='commit %h %s' 2>/dev/null | tee -a "$LOG"
if [ "${QUICK:-0}" = 1 ]; then
  run "$PY" benchmarks/profile_engine.py --repeat 3
  run "$PY" benchmarks/bench_keystroke.py --edits 30 --no-default-debounce
  run "$PY" benchmarks/bench_first.py --runs 1
  run "$PY" benchmarks/bench_memory.py --settle 5
  exit 0
fi
if [ ! -x benchmarks/.venv-peers/bin/ruff ]; then
  run bash benchmarks/setup_peers.sh
fi
run "$PY" benchmarks/profile_engine.py --repeat 5
run "$PY" benchmarks/bench_keystroke.py --edits 100
run "$PY" benchmarks/bench_first.py --runs 3 --wait-jedi 15
run "$PY" benchmarks/bench_memory.py
run "$PY" benchmarks/bench_scan.py --runs 3
if [ -f benchmarks/bench_live.py ]; then
  run "$PY" benchmarks/bench_live.py
fi
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
