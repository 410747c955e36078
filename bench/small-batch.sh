#!/usr/bin/env bash
# Per-key overhead of the packer: many small files over many keys (12,000
# files of 1–100 KiB, log-uniform, over n_bits 8 and 3 days = 768 keys), each
# tool in turn per round so load from elsewhere spreads over all of them:
# `tar | zstd -3 -T0`, `tar` alone, `des pack --codec zstd` and `--codec none`
# (with NODE_EXTRA_CA_CERTS unset; see below), and, with REF_DIR, the original
# Python packer on the same manifest (it stores payloads uncompressed, so it is
# set against `--codec none`).
# Reports median wall and CPU seconds, and the ratios des-zstd / tar|zstd and
# original / des-none: of the medians, and the median of the rounds' ratios.
#
#   bash bench/small-batch.sh
#   ROUNDS=7 bash bench/small-batch.sh
#   REF_DIR=/tmp/des-ref bash bench/small-batch.sh     # python: $REF_DIR-venv, else REF_PYTHON
#   FILES=12000 MIN_KIB=1 MAX_KIB=100 N_BITS=8 bash bench/small-batch.sh
#
# The original is only run from REF_DIR (a checkout of it, its venv beside it
# or REF_PYTHON); nothing of it is kept here. Builds the release addon and
# runs des pack with it (NAPI_RS_NATIVE_LIBRARY_PATH, as bench/pack.sh), and
# the TS (`npx tsc -p tsconfig.json`). Files are read from the page cache.
# des pack fsyncs every shard and its folder; tar and the original do not sync.
# Every run's output is kept until the end: about 1 GB of disk a round.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_OUT:-/tmp/des-small-batch}
ROUNDS=${ROUNDS:-5}
FILES=${FILES:-12000}
MIN_KIB=${MIN_KIB:-1}
MAX_KIB=${MAX_KIB:-100}
N_BITS=${N_BITS:-8}
REF_DIR=${REF_DIR:-}
CORPUS=$OUT/corpus

command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
npx tsc -p tsconfig.json
cargo build --release -p des-node --quiet
mkdir -p "$OUT"
cp "${CARGO_TARGET_DIR:-target}/release/libdes_node.so" "$OUT/des-pack.node"
export NAPI_RS_NATIVE_LIBRARY_PATH="$OUT/des-pack.node"

stamp="$FILES $MIN_KIB $MAX_KIB"
if [ ! -f "$CORPUS/manifest.json" ] || [ "$(cat "$CORPUS/.params" 2>/dev/null)" != "$stamp" ]; then
  node bench/make-corpus.js "$CORPUS" --files "$FILES" --min-kib "$MIN_KIB" --max-kib "$MAX_KIB"
  echo "$stamp" >"$CORPUS/.params"
fi
input_bytes=$(node -e "console.log(require('$CORPUS/manifest.json').reduce((s, r) => s + r.size_bytes, 0))")
keys=$(node -e "
const m = require('$CORPUS/manifest.json')
console.log(new Set(m.map((r) => r.created_at.slice(0, 10) + '/' + require('$ROOT/index.js').locateShard(r.uid, r.created_at, $N_BITS).shardHex)).size)
" 2>/dev/null || echo '?')
# Warm the page cache so every tool reads the same way.
tar -cf - -C "$CORPUS" -T "$CORPUS/files.txt" >/dev/null

# The tools: a name, its output (removed before each run), the command.
# The tools: a name, its output (a name under the round's folder, $DEST in the command), the command.
NAMES=() OUTS=() CMDS=()
tool() { NAMES+=("$1"); OUTS+=("$2"); CMDS+=("$3"); }
tool 'tar | zstd -3 -T0' corpus.tar.zst "tar -cf - -C '$CORPUS' -T '$CORPUS/files.txt' | zstd -3 -T0 -q -o \"\$DEST\""
tool 'tar' corpus.tar "tar -cf \"\$DEST\" -C '$CORPUS' -T '$CORPUS/files.txt'"
# NODE_EXTRA_CA_CERTS (set on machines behind a proxy with its own CA) makes
# Node parse that bundle at every start, before any of des runs: 41 ms here for
# 144 certificates (`node -e 0` 0.065 s with it, 0.024 s without, medians of
# 20 alternating pairs). A local pack needs no CA, so des runs without it; when
# it is set, des --codec zstd runs once more with it, and both ratios are shown.
pack_cmd() { echo "${1}node bin/des.js pack --input-json '$CORPUS/manifest.json' --output-dir \"\$DEST\" --codec $2 --n-bits $N_BITS --no-progress"; }
for codec in zstd none; do
  tool "des pack --codec $codec" "des-$codec" "$(pack_cmd 'env -u NODE_EXTRA_CA_CERTS ' "$codec")"
done
CA_TOOL='des zstd, CA bundle'
[ -z "${NODE_EXTRA_CA_CERTS:-}" ] || tool "$CA_TOOL" des-zstd-ca "$(pack_cmd '' zstd)"
if [ -n "$REF_DIR" ]; then
  REF_PYTHON=${REF_PYTHON:-$REF_DIR-venv/bin/python}
  [ -x "$REF_PYTHON" ] || REF_PYTHON=python3
  [ -d "$REF_DIR/src" ] || { echo "REF_DIR=$REF_DIR has no src/ (a checkout of the original DES)" >&2; exit 2; }
  tool 'original packer' ref "cd '$REF_DIR' && PYTHONPATH='$REF_DIR/src' '$REF_PYTHON' -m des_core.cli_packer --input-json '$CORPUS/manifest.json' --output-dir \"\$DEST\" --n-bits $N_BITS"
fi

printf '\n%s files, %.1f MiB, %s keys (n_bits %s), %s rounds, %s cores, load %s\n' "$FILES" "$(echo "$input_bytes/1048576" | bc -l)" \
  "$keys" "$N_BITS" "$ROUNDS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
for i in "${!NAMES[@]}"; do : >"$OUT/t$i"; done
# Every run writes into a folder of its own, and all of them are removed at
# the end, not between runs: ext4 skips inodes freed in the last minutes one
# by one when it places new files (recently_deleted()), so a tool that
# creates 768 files just after 768 were removed pays for the removal (11–12%
# of the CPU of a des pack run in `perf record`; its wall time 0.83 s after
# `rm -rf` of its last output, 0.71 s into a new folder, medians of 9
# alternating runs). The shard-writing tools are the ones it hits.
# `sync` (untimed) after every run: tar leaves ~250 MiB unwritten
# in the page cache, and the next tool that syncs may pay for writing it out
# (des pack --codec zstd: 2.79 s median without these syncs, 2.11 s with them,
# two 5-round runs back to back on a loaded machine).
RUNS=$OUT/runs
rm -rf "$RUNS" && sync
# Each round starts one tool further along: every tool runs after each of the
# others in turn (one that follows a large writer may find the disk still busy
# with that writer's bytes).
for ((round = 0; round < ROUNDS; round++)); do
  mkdir -p "$RUNS/$round"
  for ((k = 0; k < ${#NAMES[@]}; k++)); do
    i=$(((round + k) % ${#NAMES[@]}))
    DEST="$RUNS/$round/${OUTS[$i]}" /usr/bin/time -f '%e %U %S' -a -o "$OUT/t$i" bash -c "${CMDS[$i]}" >/dev/null
    sync
  done
done
rm -rf "$RUNS"

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A WALL CPU
printf '%-22s %9s %9s %10s   %s\n' tool 'wall s' 'cpu s' 'MiB/s' 'wall s per round'
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]}
  WALL[$name]=$(awk '{print $1}' "$OUT/t$i" | median)
  CPU[$name]=$(awk '{print $2 + $3}' "$OUT/t$i" | median)
  printf '%-22s %9.2f %9.2f %10.1f   %s\n' "$name" "${WALL[$name]}" "${CPU[$name]}" "$(echo "$input_bytes / 1048576 / ${WALL[$name]}" | bc -l)" \
    "$(awk '{printf "%s ", $1}' "$OUT/t$i")"
done

ratio() { echo "$1 / $2" | bc -l; }
# The same two tools' wall times round by round: the median of their ratios
# (a slow moment of the machine hits both runs of a round alike).
tof() { for i in "${!NAMES[@]}"; do [ "${NAMES[$i]}" = "$1" ] && echo "$OUT/t$i"; done; }
paired() { paste -d' ' "$(tof "$1")" "$(tof "$2")" | awk '{print $1 / $4}' | median; }
printf '\ndes pack zstd / tar|zstd: %.2fx wall, %.2fx cpu, %.2fx median of the rounds (target <= 1.0x)\n' \
  "$(ratio "${WALL['des pack --codec zstd']}" "${WALL['tar | zstd -3 -T0']}")" "$(ratio "${CPU['des pack --codec zstd']}" "${CPU['tar | zstd -3 -T0']}")" \
  "$(paired 'des pack --codec zstd' 'tar | zstd -3 -T0')"
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then
  printf '  with NODE_EXTRA_CA_CERTS=%s: %.2fx wall, %.2fx median of the rounds\n' "$NODE_EXTRA_CA_CERTS" \
    "$(ratio "${WALL[$CA_TOOL]}" "${WALL['tar | zstd -3 -T0']}")" "$(paired "$CA_TOOL" 'tar | zstd -3 -T0')"
fi
if [ -n "$REF_DIR" ]; then
  printf 'original / des pack none: %.2fx wall, %.2fx cpu, %.2fx median of the rounds (target >= 3x)\n' \
    "$(ratio "${WALL['original packer']}" "${WALL['des pack --codec none']}")" "$(ratio "${CPU['original packer']}" "${CPU['des pack --codec none']}")" \
    "$(paired 'original packer' 'des pack --codec none')"
fi
echo "command: env -u NODE_EXTRA_CA_CERTS node bin/des.js pack --input-json $CORPUS/manifest.json --output-dir $RUNS/<round>/des-<codec> --codec <codec> --n-bits $N_BITS --no-progress"
[ -z "$REF_DIR" ] || echo "original: cd $REF_DIR && PYTHONPATH=$REF_DIR/src $REF_PYTHON -m des_core.cli_packer --input-json $CORPUS/manifest.json --output-dir $RUNS/<round>/ref --n-bits $N_BITS"
