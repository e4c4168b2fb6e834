#!/usr/bin/env bash
# Starts a local PostgreSQL for the coordinator's tests and prints its URL.
#
# Idempotent: installs Debian's postgresql package when missing, creates and starts the cluster,
# creates the role and database (both `omoi`, password `omoi`, allowed to create databases so each
# test can have its own). Runs as root. Use it as:
#   export OMOI_TEST_POSTGRES_URL="$(scripts/start-postgres.sh)"
set -euo pipefail

ROLE="${OMOI_PG_ROLE:-omoi}"
PASSWORD="${OMOI_PG_PASSWORD:-omoi}"
DATABASE="${OMOI_PG_DATABASE:-omoi}"
PORT="${OMOI_PG_PORT:-5432}"

log() { echo "start-postgres: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
CLUSTER=main

if [ ! -d "/etc/postgresql/$VERSION/$CLUSTER" ]; then
    log "creating cluster $VERSION/$CLUSTER"
    pg_createcluster --port "$PORT" "$VERSION" "$CLUSTER" >&2
fi

if ! pg_ctlcluster "$VERSION" "$CLUSTER" status >/dev/null 2>&1; then
    log "starting cluster $VERSION/$CLUSTER"
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

CLUSTER_PORT="$(pg_conftool -s "$VERSION" "$CLUSTER" show port 2>/dev/null || echo "$PORT")"

for _ in $(seq 1 50); do
    if runuser -u postgres -- psql -p "$CLUSTER_PORT" -qAtc 'select 1' >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done

psql_admin() { runuser -u postgres -- psql -p "$CLUSTER_PORT" -v ON_ERROR_STOP=1 -qAt "$@"; }

if [ "$(psql_admin -c "select 1 from pg_roles where rolname = '$ROLE'")" != "1" ]; then
    log "creating role $ROLE"
    psql_admin -c "create role \"$ROLE\" login createdb password '$PASSWORD'" >&2
fi
if [ "$(psql_admin -c "select 1 from pg_database where datname = '$DATABASE'")" != "1" ]; then
    log "creating database $DATABASE"
    psql_admin -c "create database \"$DATABASE\" owner \"$ROLE\"" >&2
fi

echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$CLUSTER_PORT/$DATABASE"
