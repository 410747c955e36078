#!/usr/bin/env bash
# MinIO (S3-compatible) on 127.0.0.1 for integration tests.
#
#   scripts/services/minio.sh [start]   build if missing, start if not healthy, print exports
#   scripts/services/minio.sh stop      stop it (data is kept)
#   scripts/services/minio.sh restart   stop + start
#   scripts/services/minio.sh status    exit 0 if healthy
#   scripts/services/minio.sh env       print the exports only
#   scripts/services/minio.sh install   only build the binary
#
# Env: DES_SERVICES_DIR (/tmp/des-services), DES_MINIO_PORT (9000),
#      DES_MINIO_BIN (default $DES_SERVICES_DIR/bin/minio; built there if absent),
#      DES_MINIO_VERSION (Go module version to build, see below).
# Progress goes to stderr; stdout is only `export ...` lines: eval "$(minio.sh)".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# MinIO publishes no semver tags, so `@latest` is a moving pseudo-version.
# Pin the one verified to build with Go 1.26 (what `@latest` resolved to when
# this script was written: commit 7aac2a2c of 2026-02-12);
# DES_MINIO_VERSION=latest opts into the newest.
VERSION=${DES_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
PORT=${DES_MINIO_PORT:-9000}
BIN=${DES_MINIO_BIN:-$DES_SERVICES_DIR/bin/minio}
DATA=$DES_SERVICES_DIR/minio-data
LOGF=$DES_SERVICES_DIR/minio.log
PIDF=$DES_SERVICES_DIR/minio.pid
URL=http://127.0.0.1:$PORT
export MINIO_ROOT_USER=minioadmin MINIO_ROOT_PASSWORD=minioadmin
# No web console, no update checks (the network is closed anyway).
export MINIO_BROWSER=off MINIO_UPDATE=off

healthy() { curl -sf -o /dev/null --max-time 2 "$URL/minio/health/live"; }

install_minio() {
  [ -x "$BIN" ] && return 0
  local go
  go=$(command -v go || echo /usr/local/go/bin/go)
  [ -x "$go" ] || die "Go toolchain not found (need Go >= 1.24 on PATH or at /usr/local/go)"
  log "building minio@$VERSION with $("$go" version | cut -d' ' -f3) (takes ~3 min on 2 cores, ~1.5 GB RAM)..."
  local tmp start=$SECONDS
  tmp=$(mktemp -d "$DES_SERVICES_DIR/gobin.XXXXXX")
  # CGO off: pure-Go static binary, no C compiler needed (as MinIO's own release builds).
  CGO_ENABLED=0 GOBIN=$tmp GOFLAGS="${GOFLAGS:-} -trimpath" \
    "$go" install "github.com/minio/minio@$VERSION" >&2
  mkdir -p "$(dirname "$BIN")"
  mv "$tmp/minio" "$BIN" && rmdir "$tmp"
  log "built $BIN in $((SECONDS - start)) s"
}

start() {
  need_cmd curl
  if healthy; then log "already up at $URL"; return 0; fi
  install_minio
  kill_pidfile "$PIDF"             # stale/hung instance of ours, if any
  mkdir -p "$DATA"
  log "starting minio on $URL (log: $LOGF)"
  # setsid + nohup: survive the calling shell / test runner exiting.
  setsid nohup "$BIN" server --quiet --address "127.0.0.1:$PORT" "$DATA" >>"$LOGF" 2>&1 </dev/null &
  echo $! >"$PIDF"
  local i
  for ((i = 0; i < 600; i++)); do          # 60 s
    healthy && { log "up after $((i / 10)).$((i % 10)) s"; return 0; }
    pid_alive "$PIDF" || { tail -20 "$LOGF" >&2; die "minio exited during startup"; }
    sleep 0.1
  done
  tail -20 "$LOGF" >&2; die "minio not healthy after 60 s"
}

stop() {
  if pid_alive "$PIDF"; then
    log "stopping minio (pid $(cat "$PIDF"))"; kill_pidfile "$PIDF"
  else
    rm -f "$PIDF"
    # A test may have restarted it itself from the exports (no pid file then):
    # match our exact binary + address only.
    local p
    p=$(pgrep -f "^$BIN server.*127\.0\.0\.1:$PORT( |$)" || true)
    if [ -n "$p" ]; then echo "$p" | head -1 >"$PIDF"; log "stopping minio (pid $p)"; kill_pidfile "$PIDF"
    else log "not running"; fi
  fi
}

print_env() {
  cat <<EOF
export DES_TEST_S3_ENDPOINT=$URL
export AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER
export AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD
export AWS_REGION=us-east-1
export MINIO_ROOT_USER=$MINIO_ROOT_USER
export MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD
export DES_MINIO_BIN=$BIN
export DES_MINIO_DATA=$DATA
export DES_MINIO_ADDRESS=127.0.0.1:$PORT
export DES_MINIO_SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/minio.sh
EOF
}

case "${1:-start}" in
  start) start; print_env ;;
  stop) stop ;;
  restart) stop; start; print_env ;;
  status) if healthy; then log "up at $URL"; else log "down"; exit 1; fi ;;
  env) print_env ;;
  install) install_minio ;;
  *) die "usage: $0 [start|stop|restart|status|env|install]" ;;
esac
