#!/usr/bin/env bash
# The test suite in both Spark modes: classic (every suite) and Spark Connect (the suites that
# must run unchanged over Connect, see CONNECT_SUITES in tests/conftest.py). A Python process
# holds one kind of session, so the modes are two pytest processes; they run side by side and
# the exit code fails when either fails. Extra arguments go to both (e.g. -x, -k name).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p .pytest-tmp
log=.pytest-tmp/connect.log
"$PY" -m pytest -q --spark-mode=connect --basetemp=.pytest-tmp/connect "$@" >"$log" 2>&1 &
connect_pid=$!
"$PY" -m pytest -q --spark-mode=classic --basetemp=.pytest-tmp/classic "$@"
classic=$?
wait "$connect_pid"
connect=$?
echo "== Spark Connect mode (pytest --spark-mode=connect)"
cat "$log"
[ "$classic" -eq 0 ] && [ "$connect" -eq 0 ]
