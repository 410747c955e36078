# Shared helpers for scripts/services/*.sh (sourced, not executed).
# State lives under $DES_SERVICES_DIR (default /tmp/des-services).
DES_SERVICES_DIR=${DES_SERVICES_DIR:-/tmp/des-services}
mkdir -p "$DES_SERVICES_DIR"
DES_SERVICES_DIR=$(cd "$DES_SERVICES_DIR" && pwd)   # absolute, for the exports

log() { echo "[$(basename "$0" .sh)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt_install PKG... — install Debian packages, running 'apt-get update' first.
# Package postinst scripts would otherwise start the system-wide service (e.g.
# nginx on :80, the 'main' postgres cluster on :5432); a temporary
# policy-rc.d (exit 101) forbids that. An existing policy-rc.d is left alone.
apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
  local policy=/usr/sbin/policy-rc.d added=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  log "apt-get install $* ..."
  export DEBIAN_FRONTEND=noninteractive
  local rc=0 alog=$DES_SERVICES_DIR/apt.log
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; } >"$alog" 2>&1 || rc=$?
  [ $rc = 0 ] || { tail -20 "$alog" >&2; log "apt-get failed, full output in $alog"; }
  [ -n "$added" ] && rm -f "$policy"
  return $rc
}

# need_cmd CMD [PKG] — make sure CMD exists, installing PKG (default CMD) if not.
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_install "${2:-$1}"; }

# pid_alive PIDFILE — true if the pid file names a running process.
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# kill_pidfile PIDFILE [TIMEOUT_S] — TERM, wait, then KILL; removes the pid file.
kill_pidfile() {
  local f=$1 t=${2:-15} pid i
  if pid_alive "$f"; then
    pid=$(cat "$f"); kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < t * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored TERM, sending KILL"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$f"
}
