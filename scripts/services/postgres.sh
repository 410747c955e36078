#!/usr/bin/env bash
# Private PostgreSQL cluster on 127.0.0.1 for integration tests (Debian's package).
#
#   scripts/services/postgres.sh [start]   install if missing, initdb once, start, print exports
#   scripts/services/postgres.sh stop      stop it (data is kept)
#   scripts/services/postgres.sh status    exit 0 if accepting connections
#   scripts/services/postgres.sh env       print the exports only
#
# Env: DES_SERVICES_DIR (/tmp/des-services), DES_PG_PORT (55432).
# Role des/des owns database des_test. Superuser `postgres` over the unix socket
# in $DES_SERVICES_DIR/pg-socket with trust auth; TCP needs a password (scram).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${DES_PG_PORT:-55432}
PGDATA=$DES_SERVICES_DIR/pgdata
SOCK=$DES_SERVICES_DIR/pg-socket
LOGF=$DES_SERVICES_DIR/postgres.log
URL=postgres://des:des@127.0.0.1:$PORT/des_test

# Newest installed major version; empty (not an error) before postgresql is installed.
pg_bindir() { find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -1 || true; }
BINDIR=$(pg_bindir)
# The server refuses to run as root, so everything server-side runs as `postgres`.
as_pg() { runuser -u postgres -- "$@"; }
psql_su() { "$BINDIR/psql" -h "$SOCK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
ready() { [ -n "$BINDIR" ] && "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2; }

install_pg() {
  [ -n "$BINDIR" ] && [ -x "$BINDIR/initdb" ] && return 0
  apt_install postgresql
  BINDIR=$(pg_bindir)
  [ -x "$BINDIR/initdb" ] || die "postgresql installed but no initdb found"
}

init_cluster() {
  [ -s "$PGDATA/PG_VERSION" ] && return 0
  # The postgres user must be able to reach $DES_SERVICES_DIR (not e.g. under /root).
  as_pg test -x "$DES_SERVICES_DIR" || die "$DES_SERVICES_DIR not accessible to user postgres"
  log "initdb $PGDATA"
  rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres:postgres "$PGDATA"; chmod 700 "$PGDATA"
  as_pg "$BINDIR/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 >"$DES_SERVICES_DIR/initdb.log" 2>&1 ||
    { cat "$DES_SERVICES_DIR/initdb.log" >&2; rm -rf "$PGDATA"; die "initdb failed"; }
  # Test-only speedups: durability is pointless for a throwaway cluster.
  cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
}

start() {
  install_pg
  if ! ready; then
    init_cluster
    # port may have been changed via DES_PG_PORT since initdb: always pass it.
    mkdir -p "$SOCK"; chown postgres:postgres "$SOCK"
    touch "$LOGF"; chown postgres:postgres "$LOGF"
    log "starting postgres on 127.0.0.1:$PORT (log: $LOGF)"
    as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -l "$LOGF" -s -w -t 60 -o "-p $PORT" start >&2 ||
      { tail -20 "$LOGF" >&2; die "postgres failed to start"; }
  else
    log "already up on 127.0.0.1:$PORT"
  fi
  # Idempotent role/database setup (cheap, so done on every start).
  psql_su -c "DO \$\$BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'des') THEN CREATE ROLE des LOGIN PASSWORD 'des'; END IF;
    END\$\$;"
  [ "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname = 'des_test'")" = 1 ] ||
    psql_su -c "CREATE DATABASE des_test OWNER des"
}

stop() {
  if [ -n "$BINDIR" ] && [ -s "$PGDATA/postmaster.pid" ]; then
    log "stopping postgres"
    as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -s -m fast -w -t 30 stop >&2 || true
  else
    log "not running"
  fi
}

print_env() {
  cat <<EOF
export DES_TEST_PG_URL=$URL
export DES_PG_SOCKET_DIR=$SOCK
export DES_PG_BINDIR=$BINDIR
EOF
}

case "${1:-start}" in
  start) start; print_env ;;
  stop) stop ;;
  restart) stop; start; print_env ;;
  status) if ready; then log "up on 127.0.0.1:$PORT"; else log "down"; exit 1; fi ;;
  env) print_env ;;
  *) die "usage: $0 [start|stop|restart|status|env]" ;;
esac
