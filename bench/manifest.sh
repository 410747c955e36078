#!/usr/bin/env bash
# Streaming-manifest benchmark: `des pack` over manifests of 200 k, 1 M and 5 M
# entries, peak RSS (/usr/bin/time -v) and files/s, against a peak RSS target.
#
#   bash bench/manifest.sh                          # 200000 1000000 5000000 entries, full packs
#   SIZES="200000 1000000" bash bench/manifest.sh
#   MODE=dry-run bash bench/manifest.sh             # plan and checks only (des pack --dry-run)
#   MODE=both FORMAT=jsonl bash bench/manifest.sh   # JSON lines; a dry run and a pack of each
#
# Manifests come from bench/manifest-gen.js (made once per size in $DIR): 2,000
# small text files (200-1,400 bytes) and ENTRIES rows with distinct uids, row i
# pointing at file i mod 2000 with its real size, over 4 days (n_bits 8: 1,024
# keys). Every row's source is read and packed: the files are few, so they
# stay in the page cache, and what is measured is the per-entry cost of
# planning, checking and packing, not the disk. Builds the release addon and
# uses it (NAPI_RS_NATIVE_LIBRARY_PATH, as bench/pack.sh does); the TS if dist/
# is missing. The machine may be shared: CPU seconds are steadier than wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${BENCH_MANIFEST_DIR:-$ROOT/bench/out/manifest}
SIZES=${SIZES:-200000 1000000 5000000}
MODE=${MODE:-pack}
FORMAT=${FORMAT:-json}
LIMIT_MIB=${LIMIT_MIB:-300}
case "$MODE" in pack) MODES=(pack) ;; dry-run) MODES=(dry-run) ;; both) MODES=(dry-run pack) ;; *) echo "MODE must be pack, dry-run or both" >&2; exit 2 ;; esac

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
[ -f dist/cli/main.js ] || npx tsc -p tsconfig.json
cargo build --release -p des-node --quiet
mkdir -p "$DIR"
cp target/release/libdes_node.so "$DIR/des-manifest.node"
export NAPI_RS_NATIVE_LIBRARY_PATH="$DIR/des-manifest.node"

printf '\n%s cores, node %s, format %s, peak RSS target < %s MiB\n' "$(nproc)" "$(node --version)" "$FORMAT" "$LIMIT_MIB"
printf '%10s %8s %13s %9s %10s %8s %10s %7s\n' entries mode 'manifest MiB' seconds 'files/s' 'cpu s' 'peak RSS' target
missed=0
for n in $SIZES; do
  manifest="$DIR/manifest-$n.$FORMAT"
  [ -f "$manifest" ] || node bench/manifest-gen.js "$DIR" "$n" "$FORMAT"
  for mode in "${MODES[@]}"; do
    out="$DIR/store"
    rm -rf "$out"
    extra=()
    [ "$mode" = dry-run ] && extra=(--dry-run)
    /usr/bin/time -v -o "$DIR/time.txt" node bin/des.js pack --input-json "$manifest" --output-dir "$out" --no-progress --json "${extra[@]}" >"$DIR/summary.json"
    files=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$DIR/summary.json', 'utf8')).files)")
    [ "$files" = "$n" ] || { echo "des pack handled $files of $n entries" >&2; exit 1; }
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$DIR/time.txt" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$DIR/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$DIR/time.txt")
    verdict=met
    [ "$rss" -lt "$LIMIT_MIB" ] || { verdict=MISSED; missed=1; }
    printf '%10s %8s %13.1f %9.1f %10.0f %8.1f %6s MiB %7s\n' "$n" "$mode" "$(echo "$(stat -c %s "$manifest") / 1048576" | bc -l)" "$wall" \
      "$(echo "$n / $wall" | bc -l)" "$cpu" "$rss" "$verdict"
    rm -rf "$out"
  done
done
echo "command: node bin/des.js pack --input-json $DIR/manifest-<entries>.$FORMAT --output-dir $DIR/store --no-progress --json [--dry-run]"
exit "$missed"
