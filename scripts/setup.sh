#!/usr/bin/env bash
# Installs the project's dependencies and builds the addon and the JS.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: Rust (cargo) is required: install it with rustup" >&2; exit 1; }
command -v node >/dev/null || { echo "setup: Node.js 20+ is required" >&2; exit 1; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "== build (Rust addon, release; TypeScript)" >&2
npm run --silent build
