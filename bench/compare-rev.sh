#!/usr/bin/env bash
# This tree against an earlier commit, on the same bytes, rounds alternating:
# `des pack` (each codec) of one corpus, then des serve's requests per second
# with every payload decoded (no payload cache, so each request pays for the
# read checks). What a change costs, as ratios of medians.
#
#   bash bench/compare-rev.sh REV            # e.g. the commit before checksums
#   ROUNDS=7 BENCH_MIB=128 bash bench/compare-rev.sh REV
#   PACK=0 bash bench/compare-rev.sh REV     # des serve only
#   NEW=REV2 bash bench/compare-rev.sh REV   # REV2 against REV instead of this tree
#
# REV is built into a worktree under $OUT (its release addon and dist/), once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REV=${1:?usage: bench/compare-rev.sh REV}
ROUNDS=${ROUNDS:-5}
MIB=${BENCH_MIB:-128}
OUT=${BENCH_OUT:-/tmp/des-compare}
CORPUS=$OUT/corpus
. scripts/services/lib.sh
need_cmd wrk
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

old=$OUT/rev-$(git rev-parse --short "$REV")
# A tree of REV built once under $OUT: its release addon and dist/.
build_rev() {
  local dir=$1 rev=$2
  if [ ! -f "$dir/dist/cli/main.js" ]; then
    log "building $rev in $dir"
    rm -rf "$dir" && git worktree add -f "$dir" "$rev" >&2
    ln -sf "$ROOT/node_modules" "$dir/node_modules"
    (cd "$dir" && CARGO_TARGET_DIR="$OUT/target-$(basename "$dir")" cargo build --release -p des-node --quiet \
      && cp "$OUT/target-$(basename "$dir")/release/libdes_node.so" des.linux-x64-gnu.node && npx tsc -p tsconfig.json >&2 || true)
  fi
}
if [ -n "${NEW:-}" ]; then
  new=$OUT/rev-$(git rev-parse --short "$NEW")
  build_rev "$new" "$NEW"
  NEW_DIR=$new NEW_LIB=$new/des.linux-x64-gnu.node
else
  log "building this tree"
  mkdir -p "$OUT"
  cargo build --release -p des-node --quiet
  cp target/release/libdes_node.so "$OUT/des-new.node"
  npx tsc -p tsconfig.json >&2 || true
  NEW_DIR=$ROOT NEW_LIB=$OUT/des-new.node
fi
build_rev "$old" "$REV"
[ -f "$CORPUS/manifest.json" ] || node bench/make-corpus.js "$CORPUS" "$MIB" >&2

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# pack: wall and CPU seconds of each tree, alternating.
if [ "${PACK:-1}" = 1 ]; then
printf '\n== des pack, %s MiB corpus, %s rounds (medians)\n' "$MIB" "$ROUNDS"
printf '%-8s %10s %10s %10s %10s %9s %9s\n' codec 'new wall' 'old wall' 'new cpu' 'old cpu' 'wall n/o' 'cpu n/o'
for codec in zstd lz4 none; do
  : >"$OUT/new.t"; : >"$OUT/old.t"
  for ((r = 0; r < ROUNDS; r++)); do
    for side in new old; do
      dir=$NEW_DIR; lib=$NEW_LIB
      [ $side = old ] && { dir=$old; lib=$old/des.linux-x64-gnu.node; }
      rm -rf "$OUT/store-$side"
      (cd "$dir" && NAPI_RS_NATIVE_LIBRARY_PATH=$lib /usr/bin/time -f '%e %U %S' -a -o "$OUT/$side.t" \
        node bin/des.js pack --input-json "$CORPUS/manifest.json" --output-dir "$OUT/store-$side" --codec $codec --no-progress >/dev/null)
    done
  done
  nw=$(awk '{print $1}' "$OUT/new.t" | median); ow=$(awk '{print $1}' "$OUT/old.t" | median)
  nc=$(awk '{print $2+$3}' "$OUT/new.t" | median); oc=$(awk '{print $2+$3}' "$OUT/old.t" | median)
  printf '%-8s %10.2f %10.2f %10.2f %10.2f %9.3f %9.3f\n' $codec "$nw" "$ow" "$nc" "$oc" "$(echo "$nw/$ow" | bc -l)" "$(echo "$nc/$oc" | bc -l)"
done
echo "   command: node bin/des.js pack --input-json $CORPUS/manifest.json --output-dir DIR --codec CODEC --no-progress"
fi

# serve: each tree serves the zstd store it packed, payload cache off, one worker; wrk alternates.
printf '\n== des serve, zstd store, no payload cache, 1 worker, %s x 8 s rounds\n' "$ROUNDS"
paths=$OUT/paths.txt
node -e "
const m = require('$CORPUS/manifest.json')
for (let i = 0; i < m.length; i += Math.ceil(m.length / 2000)) console.log('/files/' + encodeURIComponent(m[i].uid) + '?created_at=' + encodeURIComponent(m[i].created_at))
" >"$paths"
for side in new old; do
  dir=$NEW_DIR; lib=$NEW_LIB
  [ $side = old ] && { dir=$old; lib=$old/des.linux-x64-gnu.node; }
  rm -rf "$OUT/store-$side"
  (cd "$dir" && NAPI_RS_NATIVE_LIBRARY_PATH=$lib node bin/des.js pack --input-json "$CORPUS/manifest.json" --output-dir "$OUT/store-$side" --codec zstd --no-progress >/dev/null)
done
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
port=18790
for side in new old; do
  dir=$NEW_DIR; lib=$NEW_LIB
  [ $side = old ] && { dir=$old; lib=$old/des.linux-x64-gnu.node; }
  (cd "$dir" && NAPI_RS_NATIVE_LIBRARY_PATH=$lib DES_BASE_DIR="$OUT/store-$side" DES_PAYLOAD_CACHE_BYTES=0 DES_LOG_LEVEL=warn \
    exec node bin/des.js serve --host 127.0.0.1 --port $port --workers 1 >"$OUT/serve-$side.log" 2>&1) &
  pids+=($!)
  eval "port_$side=$port"; port=$((port + 1))
done
for p in $port_new $port_old; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/health" && break; sleep 0.1; done
done
: >"$OUT/new.r"; : >"$OUT/old.r"
for ((r = 0; r < ROUNDS; r++)); do
  for side in new old; do
    p=port_$side
    wrk -t2 -c16 -d8s -s bench/serve-paths.lua "http://127.0.0.1:${!p}" -- "$paths" | awk '/Requests\/sec/ {print $2}' >>"$OUT/$side.r"
  done
done
nr=$(median <"$OUT/new.r"); orr=$(median <"$OUT/old.r")
# Each round's new/old pair ran back to back: their ratio cancels most of the machine's drift.
paired=$(paste "$OUT/new.r" "$OUT/old.r" | awk '{printf "%.3f\n", $1 / $2}')
printf 'req/s medians: new %.0f, old %.0f; new/old per round: %s-> median %s\n' "$nr" "$orr" "$(echo "$paired" | tr '\n' ' ')" "$(echo "$paired" | median)"
echo "   command: wrk -t2 -c16 -d8s -s bench/serve-paths.lua http://127.0.0.1:PORT -- $paths"
