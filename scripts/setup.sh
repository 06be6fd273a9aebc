#!/usr/bin/env bash
# Set up a development/run environment on a fresh machine: .venv, the package, the Delta Lake and
# S3A jars, redis-server for the online-store tests, and (in the background, when Go is installed)
# the SeaweedFS server the s3 test mode runs.
# Idempotent: each step is skipped when its result is already there and up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv"
JARS_DIR="${FEATURELAKE_JARS_DIR:-.jars}"
EXTRAS="${FEATURELAKE_EXTRAS:-redis,server,duckdb,connect,dev}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# The catalog's browser tests drive Debian's Chromium (Playwright never downloads a browser).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing chromium"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# Reinstall only when pyproject.toml or the extras changed.
stamp="$VENV/.featurelake-install"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing featurelake[$EXTRAS] into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
    echo "$want" > "$stamp"
fi

# The delta-spark wheel carries no jars: fetch the matching ones from Maven Central.
delta_version="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("delta-spark"))')"
mkdir -p "$JARS_DIR"
for artifact in "delta-spark_2.13" "delta-storage"; do
    jar="$JARS_DIR/$artifact-$delta_version.jar"
    if [ ! -s "$jar" ]; then
        echo "setup: fetching io.delta:$artifact:$delta_version into $JARS_DIR"
        mvn -q -B -Dstyle.color=never dependency:copy \
            -Dartifact="io.delta:$artifact:$delta_version" \
            -DoutputDirectory="$JARS_DIR" >/dev/null
    fi
done
# S3 stores (storage_path: s3://...): Hadoop's S3A for pyspark 4.0's Hadoop 3.4.1, and the AWS SDK
# v2 bundle hadoop-aws 3.4.1 depends on (software.amazon.awssdk:bundle:2.24.6).
for coordinate in "org.apache.hadoop:hadoop-aws:3.4.1" "software.amazon.awssdk:bundle:2.24.6"; do
    artifact="$(echo "$coordinate" | cut -d: -f2)"
    version="$(echo "$coordinate" | cut -d: -f3)"
    if [ ! -s "$JARS_DIR/$artifact-$version.jar" ]; then
        echo "setup: fetching $coordinate into $JARS_DIR"
        mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$coordinate" \
            -DoutputDirectory="$JARS_DIR" >/dev/null
    fi
done

# The S3-compatible server of the s3 test mode and the storage benchmark: built once from its Go
# module (several minutes) and cached; started in the background so the set-up does not wait.
# scripts/test.sh waits for it (scripts/build_seaweedfs.sh --wait).
if command -v go >/dev/null 2>&1 && [ "${FEATURELAKE_SKIP_SEAWEEDFS:-0}" != "1" ]; then
    bash scripts/build_seaweedfs.sh --background
fi
# The online-store tests run a real redis-server: install it when missing and this can (root
# with apt), else say how in one line.
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing redis-server (apt-get)"
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }; then
            echo "setup: apt-get could not install redis-server; install it with: apt-get install -y redis-server" >&2
        fi
    else
        echo "setup: redis-server is missing; install it with: sudo apt-get install -y redis-server"
    fi
fi
echo "setup: ready (delta $delta_version, jars in $JARS_DIR)"
