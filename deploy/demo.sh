#!/usr/bin/env bash
# The README's first command: a local 3-node Warden cluster (etcd, three
# agents with PostgreSQL 15, HAProxy) in the foreground until Ctrl-C.
# Extra arguments go to warden-demo (e.g. --dir /some/where).
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/dev-setup.sh
cargo build --workspace --bins
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
export WARDEN_BIN_DIR="$target_dir/debug"
# exec: Ctrl-C and SIGTERM go straight to warden-demo, which stops the
# agents first (they release the leader key through etcd), then HAProxy, etcd.
exec "$WARDEN_BIN_DIR/warden-demo" "$@"
