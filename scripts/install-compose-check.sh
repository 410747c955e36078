#!/usr/bin/env bash
# Prints a command that validates a compose file without a container engine:
# `docker compose` when the Compose plugin is there, else `docker-compose`
# (Debian's docker-compose 1.29, installed here if missing: its `config -q`
# checks the file against the Compose schema and needs no daemon).
# Used by __test__/docker.spec.ts:  $(bash scripts/install-compose-check.sh) -f docker-compose.yml config -q
set -euo pipefail
log() { echo "[install-compose-check] $*" >&2; }
if docker compose version >/dev/null 2>&1; then
  echo "docker compose"
  exit 0
fi
if ! command -v docker-compose >/dev/null 2>&1; then
  command -v apt-get >/dev/null || { log "ERROR: no docker compose, no docker-compose and no apt-get"; exit 1; }
  log "installing Debian's docker-compose (validation only)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends docker-compose >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends docker-compose >/dev/null 2>&1; } \
    || { log "ERROR: could not install docker-compose"; exit 1; }
fi
echo "docker-compose"
