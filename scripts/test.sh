#!/usr/bin/env bash
# The test suite in both Spark modes: classic (every suite) and Spark Connect (the suites that
# must run unchanged over Connect, see CONNECT_SUITES in tests/conftest.py). A Python process
# holds one kind of session, so the modes are separate pytest processes; they run side by side
# (the classic suite on two pytest-xdist workers, one Spark session each, a test file per
# worker at a time) and the exit code fails when either fails. Extra arguments go to both.
# The catalog's browser tests (tests/ui, Debian's Chromium through Playwright) run in the
# classic process; Connect mode leaves them out with the other suites outside CONNECT_SUITES.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p .pytest-tmp
log=.pytest-tmp/connect.log
"$PY" -m pytest -q --spark-mode=connect --basetemp=.pytest-tmp/connect "$@" >"$log" 2>&1 &
connect_pid=$!
"$PY" -m pytest -q --spark-mode=classic --basetemp=.pytest-tmp/classic \
    -n "${FEATURELAKE_TEST_WORKERS:-2}" --dist loadfile "$@"
classic=$?
wait "$connect_pid"
connect=$?
echo "== Spark Connect mode (pytest --spark-mode=connect)"
cat "$log"
[ "$classic" -eq 0 ] && [ "$connect" -eq 0 ]
