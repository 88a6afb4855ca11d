#!/usr/bin/env bash
# The README's second command: the whole test suite, with real etcd,
# PostgreSQL, HAProxy and patronictl. .ci/run ends with exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/dev-setup.sh
cargo build --workspace --bins
target_dir="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
# Tests use these binaries instead of building the agent themselves.
export WARDEN_BIN_DIR="$target_dir/debug"
export WARDEN_PATRONICTL="${WARDEN_VENV:-${HOME:-/root}/.cache/warden-venv}/bin/patronictl"
# Two cores: each cluster test runs 3 PostgreSQL + etcd + HAProxy; more than
# two such tests at once only makes them slower and flakier. run_tests.py runs
# the test binaries two at a time (one test thread each for the integration
# binaries), reports every failing binary, and exits non-zero if any failed.
exec python3 deploy/run_tests.py
