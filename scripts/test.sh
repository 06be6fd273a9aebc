#!/usr/bin/env bash
# The test suite in four Spark modes: classic (every suite), Spark Connect (the suites that must
# run unchanged over Connect, CONNECT_SUITES in tests/conftest.py), a standalone cluster (the
# suites whose work runs on executors, CLUSTER_SUITES) and s3 (the suites whose stores then live
# on s3:// of a local SeaweedFS server, S3_SUITES). A Python process holds one kind of session, so
# each mode is a pytest process of its own. The classic suite runs on two pytest-xdist workers
# (one Spark session each, a test file per worker at a time); beside it, one lane runs the
# Connect mode and then the s3 mode, and another the cluster mode, so that the machine's cores
# stay busy to the end (FEATURELAKE_TEST_MODES_IN_SEQUENCE=1 runs the other modes after classic
# instead). The catalog's browser tests (tests/ui, Debian's Chromium
# through Playwright) run in the classic process. The exit code fails when any mode fails. Extra
# arguments go to every mode.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p .pytest-tmp
connect_log=.pytest-tmp/connect.log
cluster_log=.pytest-tmp/cluster.log
s3_log=.pytest-tmp/s3.log

run_mode() {  # run_mode MODE LOG ARGS...: one mode's pytest process, output to LOG
    local mode=$1 log=$2
    shift 2
    local started=$SECONDS
    "$PY" -m pytest -q --spark-mode="$mode" --basetemp=".pytest-tmp/$mode" "$@" >>"$log" 2>&1
    local code=$?
    echo "($mode mode: $((SECONDS - started)) s)" >>"$log"
    return "$code"
}

s3_mode() {
    : >"$s3_log"
    # The SeaweedFS binary: built by the set-up in the background; this waits for it.
    local weed
    if weed="$(bash scripts/build_seaweedfs.sh 2>>"$s3_log" | tail -1)" && [ -x "$weed" ]; then
        FEATURELAKE_WEED="$weed" run_mode s3 "$s3_log" "$@"
    else
        echo "SeaweedFS could not be built: s3 mode did not run" >>"$s3_log"
        return 1
    fi
}

other_modes() {
    : >"$connect_log"
    : >"$cluster_log"
    # The cluster mode (the longest) in a lane of its own; Connect, then s3, in another.
    run_mode cluster "$cluster_log" "$@" &
    local cluster_pid=$!
    run_mode connect "$connect_log" "$@"
    local connect=$?
    s3_mode "$@"
    local s3=$?
    wait "$cluster_pid"
    local cluster=$?
    [ "$connect" -eq 0 ] && [ "$cluster" -eq 0 ] && [ "$s3" -eq 0 ]
}

classic_mode() {
    local started=$SECONDS
    "$PY" -m pytest -q --spark-mode=classic --basetemp=.pytest-tmp/classic \
        -n "${FEATURELAKE_TEST_WORKERS:-2}" --dist loadfile "$@"
    local code=$?
    echo "(classic mode: $((SECONDS - started)) s)"
    return "$code"
}

if [ "${FEATURELAKE_TEST_MODES_IN_SEQUENCE:-0}" = 1 ]; then
    classic_mode "$@"
    classic=$?
    other_modes "$@"
    others=$?
else
    other_modes "$@" &
    others_pid=$!
    classic_mode "$@"
    classic=$?
    wait "$others_pid"
    others=$?
fi
echo "== Spark Connect mode (pytest --spark-mode=connect)"
cat "$connect_log"
echo "== Standalone cluster mode (pytest --spark-mode=cluster)"
cat "$cluster_log"
echo "== s3 mode (pytest --spark-mode=s3)"
cat "$s3_log"
[ "$classic" -eq 0 ] && [ "$others" -eq 0 ]
