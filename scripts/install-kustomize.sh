#!/usr/bin/env bash
# Installs kustomize (the real tool, built from the Go module proxy) for the
# k8s manifest test (__test__/k8s.spec.ts). Idempotent: does nothing when the
# binary is already there. Prints the binary's path on stdout.
#
#   bash scripts/install-kustomize.sh        # -> /tmp/des-services/bin/kustomize-v5.8.2
#   DES_KUSTOMIZE_VERSION=v5.5.0 bash scripts/install-kustomize.sh   # the one kubectl 1.32 bundles
#
# Env: DES_SERVICES_DIR (/tmp/des-services), DES_KUSTOMIZE_VERSION (default: the
#      newest release Go 1.26 builds: v5.8.3 needs Go 1.27), DES_KUSTOMIZE (binary path; default
#      $DES_SERVICES_DIR/bin/kustomize-<version>).
# Needs Go (on PATH or at /usr/local/go); takes ~1-2 min on 2 cores the first time.
set -euo pipefail
DES_SERVICES_DIR=${DES_SERVICES_DIR:-/tmp/des-services}
VERSION=${DES_KUSTOMIZE_VERSION:-v5.8.2}
BIN=${DES_KUSTOMIZE:-$DES_SERVICES_DIR/bin/kustomize-$VERSION}

log() { echo "[install-kustomize] $*" >&2; }

if [ -x "$BIN" ] && "$BIN" version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi
go=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$go" ] || { log "ERROR: Go toolchain not found (need it on PATH or at /usr/local/go)"; exit 1; }
mkdir -p "$(dirname "$BIN")"
tmp=$(mktemp -d "$(dirname "$BIN")/gobin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "building sigs.k8s.io/kustomize/kustomize/v5@$VERSION with $("$go" version | cut -d' ' -f3)..."
start=$SECONDS
CGO_ENABLED=0 GOBIN=$tmp GOFLAGS="${GOFLAGS:-} -trimpath" \
  "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION" >&2
mv "$tmp/v5" "$BIN" 2>/dev/null || mv "$tmp/kustomize" "$BIN"
log "built $BIN in $((SECONDS - start)) s"
echo "$BIN"
