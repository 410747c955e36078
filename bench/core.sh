#!/usr/bin/env bash
# Core benchmark (1,000,000 entries). Usage: bash bench/core.sh
# Needs the release addon (npm run build:native) and the zstd and lz4 CLIs.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in zstd lz4; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd lz4 >/dev/null; }
done
[ -f des.linux-x64-gnu.node ] || npm run --silent build:native
echo "== bench/core.ts  (entries=${BENCH_ENTRIES:-1000000}, $(nproc) cores)"
node --import tsx bench/core.ts
