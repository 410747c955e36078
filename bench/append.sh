#!/usr/bin/env bash
# What an append costs against the size of the shard it goes to: FILES small
# files (KIB KiB each, zstd) appended to local shards of 1 MiB, 100 MiB and
# 1 GiB, beside a copy of each shard with an fsync (the least a copying append
# pays). With OLD=REV, REV's addon appends too, rounds alternating: the
# before and after of a change. Medians of ROUNDS.
#
#   bash bench/append.sh                 # this tree
#   OLD=6a79b0c~1 bash bench/append.sh   # and the last commit that copied the shard
#   SIZES="1 100 1024" FILES=100 KIB=4 ROUNDS=5 BENCH_OUT=/tmp/des-append bash bench/append.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_OUT:-/tmp/des-append}
SIZES=${SIZES:-1 100 1024}
FILES=${FILES:-100}
KIB=${KIB:-4}
ROUNDS=${ROUNDS:-5}
mkdir -p "$OUT"
cargo build --release -p des-node --quiet
cp target/release/libdes_node.so "$OUT/des-new.node"
IMPLS=(new)
declare -A LIB=([new]=$OUT/des-new.node)
if [ -n "${OLD:-}" ]; then
  rev=$(git rev-parse --short "$OLD")
  if [ ! -f "$OUT/des-$rev.node" ]; then
    rm -rf "$OUT/rev-$rev" && git worktree add -f "$OUT/rev-$rev" "$rev" >&2
    (cd "$OUT/rev-$rev" && CARGO_TARGET_DIR="$OUT/target-$rev" cargo build --release -p des-node --quiet)
    cp "$OUT/target-$rev/release/libdes_node.so" "$OUT/des-$rev.node"
  fi
  IMPLS+=("$rev")
  LIB[$rev]=$OUT/des-$rev.node
fi
step() { NAPI_RS_NATIVE_LIBRARY_PATH=${LIB[$1]} node bench/append.js "${@:2}"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

for mib in $SIZES; do step new make "$OUT/s$mib.des" "$mib"; done
for ((r = 0; r < ROUNDS; r++)); do
  for mib in $SIZES; do
    for impl in "${IMPLS[@]}"; do step "$impl" add "$OUT/s$mib.des" "$FILES" "$KIB" >>"$OUT/$impl-$mib.t"; done
    step new copy "$OUT/s$mib.des" >>"$OUT/copy-$mib.t"
  done
done

printf '\nappend %s files of %s KiB (zstd) to a local shard, %s rounds, medians in ms\n' "$FILES" "$KIB" "$ROUNDS"
printf '%-10s' 'shard'; for impl in "${IMPLS[@]}"; do printf '%12s' "$impl"; done; printf '%14s %12s\n' 'copy+fsync' "new/new@$(echo $SIZES | cut -d' ' -f1)MiB"
first=
for mib in $SIZES; do
  printf '%-10s' "$mib MiB"
  for impl in "${IMPLS[@]}"; do declare "m_$impl=$(median <"$OUT/$impl-$mib.t")"; v="m_$impl"; printf '%12.1f' "${!v}"; done
  c=$(median <"$OUT/copy-$mib.t")
  first=${first:-$m_new}
  printf '%14.1f %12.2f\n' "$c" "$(echo "$m_new / $first" | bc -l)"
done
rm -f "$OUT"/*.t "$OUT"/s*.des
echo "command: OLD=${OLD:-} SIZES=\"$SIZES\" FILES=$FILES KIB=$KIB ROUNDS=$ROUNDS bash bench/append.sh"
