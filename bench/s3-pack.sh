#!/usr/bin/env bash
# Packing many small files into S3 (MinIO on 127.0.0.1, started by the
# service scripts): the small-batch corpus (12,000 files of 1–100 KiB over
# 768 keys, bench/small-batch.sh makes it) packed into a fresh prefix by this
# tree and by REV, rounds alternating, with the baseline in the same rounds:
# `tar | zstd -3 -T0` of the same files uploaded as one object (the floor for
# getting the bytes into the bucket: one PUT, nothing findable by uid).
# Reports median wall and CPU seconds of each, the requests each tree sends
# by command, and the ratios.
#
#   bash bench/s3-pack.sh REV          # e.g. the commit before a change
#   ROUNDS=5 bash bench/s3-pack.sh REV
#   LATENCY_MS=10 bash bench/s3-pack.sh REV   # through bench/latency-proxy.js: 10 ms each way
#
# REV is built into a worktree under $OUT once (its release addon and dist/).
# MinIO runs on the same two cores as the packer: its CPU is not counted in
# the packer's, but it competes for the cores; against AWS S3 the requests
# cost latency instead.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REV=${1:?usage: bench/s3-pack.sh REV}
ROUNDS=${ROUNDS:-3}
OUT=${BENCH_OUT:-/tmp/des-s3-pack}
CORPUS=${CORPUS:-/tmp/des-small-batch/corpus}
. scripts/services/lib.sh
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
[ -f "$CORPUS/manifest.json" ] || node bench/make-corpus.js "$CORPUS" --files 12000 --min-kib 1 --max-kib 100 >&2
eval "$(bash scripts/services/up.sh)"
export DES_S3_ENDPOINT_URL=$DES_TEST_S3_ENDPOINT AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD AWS_REGION=${AWS_REGION:-us-east-1}
if [ -n "${LATENCY_MS:-}" ]; then
  # MinIO as far away as a region: every chunk held LATENCY_MS each way.
  coproc PROXY { exec node bench/latency-proxy.js 0 "${DES_TEST_S3_ENDPOINT##*:}" "$LATENCY_MS"; }
  trap 'kill $PROXY_PID 2>/dev/null || true' EXIT
  read -r _ proxy_port <&"${PROXY[0]}"
  DES_S3_ENDPOINT_URL=http://127.0.0.1:$proxy_port
fi

mkdir -p "$OUT"
old=$OUT/rev-$(git rev-parse --short "$REV")
if [ ! -f "$old/dist/cli/main.js" ]; then
  log "building $REV in $old"
  rm -rf "$old" && git worktree add -f "$old" "$REV" >&2
  ln -sf "$ROOT/node_modules" "$old/node_modules"
  (cd "$old" && CARGO_TARGET_DIR="$OUT/target-rev" cargo build --release -p des-node --quiet \
    && cp "$OUT/target-rev/release/libdes_node.so" des.linux-x64-gnu.node && npx tsc -p tsconfig.json >&2)
fi
log "building this tree"
cargo build --release -p des-node --quiet
cp target/release/libdes_node.so "$OUT/des-new.node"
npx tsc -p tsconfig.json >&2

bucket=bench-s3-pack-$(date +%s)
node -e "
const { S3Client, CreateBucketCommand } = require('@aws-sdk/client-s3')
new S3Client({ endpoint: process.env.DES_S3_ENDPOINT_URL, forcePathStyle: true }).send(new CreateBucketCommand({ Bucket: '$bucket' }))
  .catch((e) => { console.error(e.message); process.exit(1) })"
upload_tar() {
  tar -cf - -C "$CORPUS" -T "$CORPUS/files.txt" | zstd -3 -T0 -q -o "$OUT/corpus.tar.zst" -f
  node -e "
const fs = require('node:fs')
const { S3Client, PutObjectCommand } = require('@aws-sdk/client-s3')
new S3Client({ endpoint: process.env.DES_S3_ENDPOINT_URL, forcePathStyle: true })
  .send(new PutObjectCommand({ Bucket: '$bucket', Key: 'tar/$1.tar.zst', Body: fs.createReadStream('$OUT/corpus.tar.zst'), ContentLength: fs.statSync('$OUT/corpus.tar.zst').size }))
  .catch((e) => { console.error(e.message); process.exit(1) })"
}
# Warm the page cache so every tool reads the same way.
tar -cf - -C "$CORPUS" -T "$CORPUS/files.txt" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
: >"$OUT/new.t"; : >"$OUT/old.t"; : >"$OUT/tar.t"
for ((r = 0; r < ROUNDS; r++)); do
  NAPI_RS_NATIVE_LIBRARY_PATH=$OUT/des-new.node /usr/bin/time -f '%e %U %S' -a -o "$OUT/new.t" \
    node bench/s3-pack-run.js "$ROOT" "$CORPUS/manifest.json" "$bucket" "new-$r/" >"$OUT/new-$r.json"
  NAPI_RS_NATIVE_LIBRARY_PATH=$old/des.linux-x64-gnu.node /usr/bin/time -f '%e %U %S' -a -o "$OUT/old.t" \
    node bench/s3-pack-run.js "$old" "$CORPUS/manifest.json" "$bucket" "old-$r/" >"$OUT/old-$r.json"
  /usr/bin/time -f '%e %U %S' -a -o "$OUT/tar.t" bash -c "$(declare -f upload_tar); OUT='$OUT' CORPUS='$CORPUS' bucket='$bucket'; upload_tar $r"
done

wall() { awk '{print $1}' "$OUT/$1.t" | median; }
cpu() { awk '{print $2+$3}' "$OUT/$1.t" | median; }
printf '\n12,000 files into s3://%s (MinIO, 127.0.0.1, %s ms added each way), %s rounds, medians\n' "$bucket" "${LATENCY_MS:-0}" "$ROUNDS"
printf '%-30s %8s %8s %9s\n' tool 'wall s' 'cpu s' requests
printf '%-30s %8.2f %8.2f %9s\n' 'tar | zstd -3 -T0, one PUT' "$(wall tar)" "$(cpu tar)" 1
for side in new old; do
  name="des pack, this tree"; [ $side = old ] && name="des pack, $(git rev-parse --short "$REV")"
  printf '%-30s %8.2f %8.2f %9s   %s\n' "$name" "$(wall $side)" "$(cpu $side)" \
    "$(node -e "console.log(require('$OUT/$side-0.json').total)")" "$(node -e "console.log(JSON.stringify(require('$OUT/$side-0.json').requests))")"
done
printf '\nthis tree / %s: %.2fx wall, %.2fx cpu; this tree / tar|zstd upload: %.2fx wall\n' "$(git rev-parse --short "$REV")" \
  "$(echo "$(wall new)/$(wall old)" | bc -l)" "$(echo "$(cpu new)/$(cpu old)" | bc -l)" "$(echo "$(wall new)/$(wall tar)" | bc -l)"
echo "command: node bench/s3-pack-run.js TREE $CORPUS/manifest.json BUCKET PREFIX (runPack into s3, nBits 8, zstd)"
