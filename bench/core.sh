#!/usr/bin/env bash
# Core benchmark (1,000,000 entries). Usage: bash bench/core.sh
# Builds the release addon into bench/out (so a debug build elsewhere cannot
# be measured by mistake) and needs the zstd and lz4 CLIs for the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in zstd lz4; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd lz4 >/dev/null; }
done
cargo build --release -p des-node --quiet
mkdir -p bench/out
cp target/release/libdes_node.so bench/out/des.node
export NAPI_RS_NATIVE_LIBRARY_PATH="$PWD/bench/out/des.node"
echo "== node --import tsx bench/core.ts  (entries=${BENCH_ENTRIES:-1000000}, $(nproc) cores, release addon)"
node --import tsx bench/core.ts
