#!/usr/bin/env bash
# Packer benchmark: `des pack` with each codec next to `tar | zstd -3 -T0` and
# `tar` alone, on the same corpus, in the same run. Reports MiB/s of input,
# peak RSS (/usr/bin/time -v) and output/input ratios.
#
#   bash bench/pack.sh                 # ~1 GiB corpus in bench/corpus (made once)
#   BENCH_MIB=256 bash bench/pack.sh   # a smaller corpus (regenerated if the size differs)
#   BENCH_RUNS=3 bash bench/pack.sh    # 3 rounds, best per tool
#
# Builds the release addon and runs des pack with it (NAPI_RS_NATIVE_LIBRARY_PATH,
# as bench/core.sh does, so a debug build in the tree is never measured), and
# the TS if dist/ is missing (`npx tsc -p tsconfig.json`). Files are read
# from the page cache in every run (the corpus is read once before timing).
# des pack fsyncs every shard; tar does not sync its output. The machine may be
# shared: 'cpu s' (user + sys) and MiB per CPU-second are steadier than wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CORPUS=${BENCH_CORPUS:-$ROOT/bench/corpus}
OUT=${BENCH_OUT:-$ROOT/bench/out}
MIB=${BENCH_MIB:-1024}
RUNS=${BENCH_RUNS:-1}

command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
[ -f dist/cli/main.js ] || npx tsc -p tsconfig.json
cargo build --release -p des-node --quiet
mkdir -p "$OUT"
cp target/release/libdes_node.so "$OUT/des-pack.node"
export NAPI_RS_NATIVE_LIBRARY_PATH="$OUT/des-pack.node"
if [ ! -f "$CORPUS/manifest.json" ] || [ "$(cat "$CORPUS/.mib" 2>/dev/null)" != "$MIB" ]; then
  node bench/make-corpus.js "$CORPUS" "$MIB"
  echo "$MIB" >"$CORPUS/.mib"
fi

input_bytes=$(node -e "console.log(require('$CORPUS/manifest.json').reduce((s, r) => s + r.size_bytes, 0))")
files=$(wc -l <"$CORPUS/files.txt")
# Warm the page cache so every tool reads the same way.
tar -cf - -C "$CORPUS" -T "$CORPUS/files.txt" >/dev/null

printf '\n%s files, %.1f MiB input, %s cores, %s\n' "$files" "$(echo "$input_bytes/1048576" | bc -l)" "$(nproc)" "$(zstd --version | head -1)"
printf '%-26s %9s %10s %9s %12s %12s %9s\n' tool seconds 'MiB/s' 'cpu s' 'MiB/cpu-s' 'peak RSS' 'out/in'

# The tools: a name, the output to measure, the command. Rounds run each tool
# once, in turn, so a burst of load from elsewhere does not land on one tool
# only; the best wall time of each (with that run's CPU time and peak RSS) is reported.
NAMES=() OUTS=() CMDS=()
tool() { NAMES+=("$1"); OUTS+=("$2"); CMDS+=("$3"); }
tool 'tar' "$OUT/corpus.tar" "tar -cf '$OUT/corpus.tar' -C '$CORPUS' -T '$CORPUS/files.txt'"
tool 'tar | zstd -3 -T0' "$OUT/corpus.tar.zst" "tar -cf - -C '$CORPUS' -T '$CORPUS/files.txt' | zstd -3 -T0 -q -o '$OUT/corpus.tar.zst'"
tool 'tar | zstd -3 -T0 + fsync' "$OUT/corpus.tar.zst" "tar -cf - -C '$CORPUS' -T '$CORPUS/files.txt' | zstd -3 -T0 -q -o '$OUT/corpus.tar.zst' && sync '$OUT/corpus.tar.zst'"
for codec in zstd lz4 none; do
  tool "des pack --codec $codec" "$OUT/des-$codec" "node bin/des.js pack --input-json '$CORPUS/manifest.json' --output-dir '$OUT/des-$codec' --codec $codec --no-progress"
done

declare -A BEST RSS CPU SIZE SPEED
mkdir -p "$OUT"
for ((round = 0; round < RUNS; round++)); do
  for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]} output=${OUTS[$i]} cmd=${CMDS[$i]}
    rm -rf "$output"
    /usr/bin/time -v -o "$OUT/time.txt" bash -c "$cmd" >/dev/null
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/time.txt" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    if [ -z "${BEST[$name]:-}" ] || [ "$(echo "$wall < ${BEST[$name]}" | bc -l)" = 1 ]; then
      BEST[$name]=$wall
      RSS[$name]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time.txt")
      CPU[$name]=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$OUT/time.txt")
      SIZE[$name]=$(du -sb "$output" | cut -f1)
    fi
  done
done
for name in "${NAMES[@]}"; do
  SPEED[$name]=$(echo "$input_bytes / 1048576 / ${BEST[$name]}" | bc -l)
  printf '%-26s %9.2f %10.1f %9.2f %12.1f %8.0f MiB %9.3f\n' "$name" "${BEST[$name]}" "${SPEED[$name]}" "${CPU[$name]}" \
    "$(echo "$input_bytes / 1048576 / ${CPU[$name]}" | bc -l)" "$(echo "${RSS[$name]}/1024" | bc -l)" "$(echo "${SIZE[$name]} / $input_bytes" | bc -l)"
done
rm -rf "$OUT/corpus.tar" "$OUT/corpus.tar.zst" "$OUT"/des-zstd "$OUT"/des-lz4 "$OUT"/des-none

printf '\ndes pack zstd / tar|zstd speed: %.2fx   des pack none / tar speed: %.2fx\n' \
  "$(echo "${SPEED['des pack --codec zstd']} / ${SPEED['tar | zstd -3 -T0']}" | bc -l)" \
  "$(echo "${SPEED['des pack --codec none']} / ${SPEED['tar']}" | bc -l)"
echo "command: node bin/des.js pack --input-json $CORPUS/manifest.json --output-dir $OUT/des-<codec> --codec <codec> --no-progress"
