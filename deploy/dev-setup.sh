#!/usr/bin/env bash
# Prepare a Debian 12 machine for building, testing and running the demo.
# Idempotent: installs only what is missing, so it is cheap to run every time
# (deploy/demo.sh, deploy/test.sh and .ci/run all call it).
#
# Assumed present: the Rust toolchain and PostgreSQL 15
# (/usr/lib/postgresql/15/bin, with its `postgres` OS user).
set -euo pipefail

# etcd-server, haproxy: run by the demo and the integration tests.
# protobuf-compiler, libprotobuf-dev: etcd-client's build script needs protoc and the
# well-known .proto files (google/protobuf/*.proto), which only libprotobuf-dev ships.
# redis-server: Redis mode tests. iproute2: network-namespace partitions.
# python3-venv: the venv holding patronictl for interoperability tests.
# etcd-client, restic, mariadb-server, mariadb-client, mariadb-backup: the backup jobs'
# tests (etcdctl snapshots, restic repositories, MariaDB dumps and physical copies).
# pgbackrest: the backup benchmark's baseline.
PACKAGES=(etcd-server haproxy protobuf-compiler libprotobuf-dev redis-server iproute2 python3-venv
    etcd-client restic mariadb-server mariadb-client mariadb-backup pgbackrest)
VENV="${WARDEN_VENV:-${HOME:-/root}/.cache/warden-venv}"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "dev-setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
    # The package starts a system etcd on 127.0.0.1:2379 where systemd runs;
    # the demo needs that port and tests start their own etcd. Only undo what
    # this script just installed.
    if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
        "${SUDO[@]}" systemctl disable --now etcd.service >/dev/null 2>&1 || true
    fi
fi

for tool in etcd haproxy protoc; do
    command -v "$tool" >/dev/null || { echo "dev-setup: $tool still missing after install" >&2; exit 1; }
done

# patronictl (Patroni's CLI, from PyPI) in its own venv, for interop tests.
if ! "$VENV/bin/python" -c 'import patroni, psycopg2, etcd' >/dev/null 2>&1 \
    || [ ! -x "$VENV/bin/patronictl" ]; then
    echo "dev-setup: creating patronictl venv in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'patroni[etcd3]>=4,<5' psycopg2-binary
fi
# moto_server (S3-compatible, in memory) for the backup repository tests; boto3 comes
# with it and lets tests reach into a bucket without Warden's code.
if ! "$VENV/bin/python" -c 'import moto.server, flask, boto3' >/dev/null 2>&1 \
    || [ ! -x "$VENV/bin/moto_server" ]; then
    echo "dev-setup: installing moto[server] into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
# redis-py (Sentinel clients' behaviour) for the Redis engine's interoperability tests.
if ! "$VENV/bin/python" -c 'import redis.sentinel' >/dev/null 2>&1; then
    echo "dev-setup: installing redis-py into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'redis>=5,<9'
fi
"$VENV/bin/patronictl" version >/dev/null 2>&1 \
    || { echo "dev-setup: $VENV/bin/patronictl does not run" >&2; exit 1; }
"$VENV/bin/moto_server" --help >/dev/null 2>&1 \
    || { echo "dev-setup: $VENV/bin/moto_server does not run" >&2; exit 1; }
echo "dev-setup: ok (patronictl: $VENV/bin/patronictl, moto_server: $VENV/bin/moto_server)"
