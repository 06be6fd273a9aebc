#!/usr/bin/env bash
# Build the SeaweedFS `weed` binary (Apache-2.0) that the s3 test mode and the storage benchmark
# run as a real S3-compatible server on loopback. Built once from its Go module and cached under a
# folder keyed by version; skipped when the binary is already there. `go install module@version`
# refuses the module (its go.mod has replace directives), so the module is downloaded and its
# weed/ folder built in a writable copy. Prints the binary's path on its last line.
#   build_seaweedfs.sh               build (or wait for a build under way), print the path
#   build_seaweedfs.sh --background  start the build in the background and return at once
# Builds hold a lock on the cache folder, so a second call waits for the first.
set -euo pipefail

VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
MODULE="github.com/seaweedfs/seaweedfs"
CACHE="${FEATURELAKE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/featurelake}/seaweedfs/$VERSION"
BIN="$CACHE/weed"

if [ -x "$BIN" ]; then
    [ "${1:-}" = "--background" ] || echo "$BIN"
    exit 0
fi
command -v go >/dev/null 2>&1 || { echo "build_seaweedfs: go is not installed" >&2; exit 1; }

mkdir -p "$CACHE"
if [ "${1:-}" = "--background" ]; then
    if ! flock -n "$CACHE/.lock" true; then  # a build under way holds the lock: leave it be
        echo "setup: SeaweedFS $VERSION is being built in the background (log: $CACHE/build.log)"
        exit 0
    fi
    echo "setup: building SeaweedFS $VERSION in the background (log: $CACHE/build.log)"
    nohup bash "$0" >"$CACHE/build.log" 2>&1 </dev/null &
    exit 0
fi
exec 9>"$CACHE/.lock"
flock 9
if [ -x "$BIN" ]; then
    echo "$BIN"
    exit 0
fi
work="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

echo "build_seaweedfs: downloading $MODULE@$VERSION" >&2
dir="$(cd "$work" && go mod download -json "$MODULE@$VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[ -d "$dir" ] || { echo "build_seaweedfs: module download gave no folder" >&2; exit 1; }

cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
echo "build_seaweedfs: building weed (several minutes)" >&2
(cd "$work/src/weed" && GOFLAGS=-buildvcs=false go build -o "$work/weed" .)
mv "$work/weed" "$BIN"
echo "$BIN"
