#!/usr/bin/env bash
# The test suite in its three modes: classic (every suite), Spark Connect (the suites that must
# run unchanged over Connect, see CONNECT_SUITES in tests/conftest.py) and s3 (the suites whose
# stores then live on s3:// of a local SeaweedFS server, see S3_SUITES). A Python process holds
# one kind of session, so the modes are separate pytest processes: the classic suite runs on two
# pytest-xdist workers (one Spark session each, a test file per worker at a time) beside one lane
# running Connect mode and then s3 mode. The exit code fails when any mode fails. Extra arguments
# go to every mode.
# The catalog's browser tests (tests/ui, Debian's Chromium through Playwright) run in the classic
# process.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p .pytest-tmp
connect_log=.pytest-tmp/connect.log
s3_log=.pytest-tmp/s3.log
: >"$s3_log"
(
    "$PY" -m pytest -q --spark-mode=connect --basetemp=.pytest-tmp/connect "$@" >"$connect_log" 2>&1
    connect=$?
    # The SeaweedFS binary: built by the set-up in the background; this waits for it.
    if weed="$(bash scripts/build_seaweedfs.sh 2>>"$s3_log" | tail -1)" && [ -x "$weed" ]; then
        FEATURELAKE_WEED="$weed" "$PY" -m pytest -q --spark-mode=s3 --basetemp=.pytest-tmp/s3 \
            "$@" >>"$s3_log" 2>&1
        s3=$?
    else
        echo "SeaweedFS could not be built: s3 mode did not run" >>"$s3_log"
        s3=1
    fi
    [ "$connect" -eq 0 ] && [ "$s3" -eq 0 ]
) &
lane_pid=$!
"$PY" -m pytest -q --spark-mode=classic --basetemp=.pytest-tmp/classic \
    -n "${FEATURELAKE_TEST_WORKERS:-2}" --dist loadfile "$@"
classic=$?
wait "$lane_pid"
lane=$?
echo "== Spark Connect mode (pytest --spark-mode=connect)"
cat "$connect_log"
echo "== s3 mode (pytest --spark-mode=s3)"
cat "$s3_log"
[ "$classic" -eq 0 ] && [ "$lane" -eq 0 ]
