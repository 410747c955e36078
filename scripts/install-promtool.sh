#!/usr/bin/env bash
# Installs promtool (Prometheus's rule checker and unit tester) for the alert
# rule test (__test__/alerts.spec.ts: `promtool test rules`). Idempotent: does
# nothing when the binary is already there. Prints the binary's path on stdout.
#
#   bash scripts/install-promtool.sh        # -> /tmp/des-services/bin/promtool
#
# Where it comes from, first that works:
#   1. Debian's `prometheus` package (bookworm: 2.42): only usr/bin/promtool is
#      taken out of the .deb (`apt-get download` + `dpkg-deb -x`): no service,
#      no dependencies installed.
#   2. `go install` of the prometheus module pinned below (slow: many packages).
#
# Env: DES_SERVICES_DIR (/tmp/des-services), DES_PROMTOOL (binary path; default
#      $DES_SERVICES_DIR/bin/promtool), DES_PROMTOOL_GO_VERSION (v0.54.1 = Prometheus 2.54.1).
set -euo pipefail
DES_SERVICES_DIR=${DES_SERVICES_DIR:-/tmp/des-services}
BIN=${DES_PROMTOOL:-$DES_SERVICES_DIR/bin/promtool}
GO_VERSION=${DES_PROMTOOL_GO_VERSION:-v0.54.1}

log() { echo "[install-promtool] $*" >&2; }

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$(dirname "$BIN")"
tmp=$(mktemp -d "$(dirname "$BIN")/promtool.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

from_deb() {
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || return 1
  # apt-get download needs package lists; fetch them once if it finds nothing.
  (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) \
    || { apt-get update >/dev/null 2>&1 && (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); } \
    || return 1
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  [ -x "$tmp/root/usr/bin/promtool" ] || return 1
  mv "$tmp/root/usr/bin/promtool" "$BIN"
}

from_go() {
  local go
  go=$(command -v go || echo /usr/local/go/bin/go)
  [ -x "$go" ] || { log "no Go toolchain either (need it on PATH or at /usr/local/go)"; return 1; }
  log "building github.com/prometheus/prometheus/cmd/promtool@$GO_VERSION with $("$go" version | cut -d' ' -f3) (several minutes)..."
  CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" "$go" install "github.com/prometheus/prometheus/cmd/promtool@$GO_VERSION" >&2
  mv "$tmp/promtool" "$BIN"
}

if from_deb; then
  log "promtool from Debian's prometheus package: $("$BIN" --version 2>&1 | head -1)"
elif from_go; then
  log "promtool built with go install: $("$BIN" --version 2>&1 | head -1)"
else
  log "ERROR: could not install promtool"
  exit 1
fi
echo "$BIN"
