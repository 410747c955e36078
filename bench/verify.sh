#!/usr/bin/env bash
# Store-wide verify benchmark: `des verify --store` over a packed store, on
# local disk and on MinIO, next to what merely reading the same bytes costs
# (local: `cat` of every file, and `sha256sum`; MinIO: one GET of every object
# at the same parallelism, bodies discarded). Reports MiB/s, objects/s,
# CPU seconds and peak RSS.
#
#   bash bench/verify.sh                  # the ~1 GiB corpus of bench/pack.sh (made once), zstd
#   BENCH_MIB=256 bash bench/verify.sh    # a smaller corpus (regenerated if the size differs)
#   BENCH_RUNS=3 bash bench/verify.sh     # 3 rounds, best of each
#   BENCH_S3=0 bash bench/verify.sh       # local only
#   BENCH_N_BITS=4 bash bench/verify.sh   # 16 shards a day instead of 256: fewer, larger shards
#   BENCH_PARALLEL=8 bash bench/verify.sh # --parallel (default: the CPUs)
#   BENCH_PER_SHARD=0 bash bench/verify.sh # skip the slow one-process-per-shard baseline
#
# Builds the release addon and runs with it (NAPI_RS_NATIVE_LIBRARY_PATH, as
# bench/pack.sh does); the TS if dist/ is missing. MinIO comes from
# scripts/services/up.sh. Local files are read from the page cache (the store
# is read once before timing): the figures are what verifying costs in CPU,
# not what a cold disk delivers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CORPUS=${BENCH_CORPUS:-$ROOT/bench/corpus}
OUT=${BENCH_OUT:-$ROOT/bench/out}
MIB=${BENCH_MIB:-1024}
RUNS=${BENCH_RUNS:-1}
S3=${BENCH_S3:-1}
PARALLEL=${BENCH_PARALLEL:-$(nproc)}
N_BITS=${BENCH_N_BITS:-8}

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
[ -f dist/cli/main.js ] || npx tsc -p tsconfig.json
cargo build --release -p des-node --quiet
mkdir -p "$OUT"
cp target/release/libdes_node.so "$OUT/des-verify.node"
export NAPI_RS_NATIVE_LIBRARY_PATH="$OUT/des-verify.node"
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
if [ ! -f "$CORPUS/manifest.json" ] || [ "$(cat "$CORPUS/.mib" 2>/dev/null)" != "$MIB" ]; then
  node bench/make-corpus.js "$CORPUS" "$MIB"
  echo "$MIB" >"$CORPUS/.mib"
fi

STORE=$OUT/verify-store-$N_BITS
if [ "$(cat "$STORE.made-from" 2>/dev/null)" != "$MIB" ]; then
  rm -rf "$STORE"
  node bin/des.js pack --input-json "$CORPUS/manifest.json" --output-dir "$STORE" --n-bits "$N_BITS" --codec zstd --no-progress >/dev/null
  echo "$MIB" >"$STORE.made-from"
fi
store_bytes=$(find "$STORE" -name '*.des' -printf '%s\n' | awk '{s += $1} END {print s}')
shards=$(find "$STORE" -name '*.des' | wc -l)
find "$STORE" -name '*.des' -print0 | xargs -0 cat >/dev/null # into the page cache

# GET every object of the bucket, PARALLEL at a time, bodies discarded: what reading alone costs.
cat >"$OUT/s3-read-all.js" <<'EOF'
const { S3Client, ListObjectsV2Command, GetObjectCommand, DeleteObjectsCommand, DeleteBucketCommand } = require(process.cwd() + '/node_modules/@aws-sdk/client-s3')
const [bucket, prefix, parallel, mode] = [process.argv[2], process.argv[3], Number(process.argv[4]), process.argv[5]]
const c = new S3Client({ endpoint: process.env.DES_TEST_S3_ENDPOINT, region: 'us-east-1', forcePathStyle: true })
;(async () => {
  const keys = []
  let token
  do {
    const p = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))
    for (const o of p.Contents ?? []) keys.push(o.Key)
    token = p.IsTruncated ? p.NextContinuationToken : undefined
  } while (token)
  if (mode === 'remove') {
    for (let i = 0; i < keys.length; i += 1000) {
      await c.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })) } }))
    }
    return c.send(new DeleteBucketCommand({ Bucket: bucket }))
  }
  let next = 0
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < keys.length) {
      const out = await c.send(new GetObjectCommand({ Bucket: bucket, Key: keys[next++] }))
      for await (const _ of out.Body) {}
    }
  }))
})()
EOF

if [ "$S3" = 1 ]; then
  eval "$(bash scripts/services/up.sh 2>/dev/null)"
  BUCKET=bench-verify-$(date +%s)
  # The bucket is emptied and removed at the end (MinIO's disk is the test machine's).
  trap 'node "$OUT/s3-read-all.js" "$BUCKET" des/ 0 remove || true' EXIT
  node -e "
    const { S3Client, CreateBucketCommand } = require('@aws-sdk/client-s3')
    new S3Client({ endpoint: process.env.DES_TEST_S3_ENDPOINT, region: 'us-east-1', forcePathStyle: true })
      .send(new CreateBucketCommand({ Bucket: '$BUCKET' })).catch((e) => { console.error(e.message); process.exit(1) })"
  DES_S3_ENDPOINT_URL=$DES_TEST_S3_ENDPOINT node bin/des.js pack --input-json "$CORPUS/manifest.json" --s3-bucket "$BUCKET" --s3-prefix des/ --n-bits "$N_BITS" --codec zstd --no-progress >/dev/null
fi


printf '\n%s shards (n_bits %s), %.1f MiB of shards (zstd, from %s MiB of files), %s cores, --parallel %s\n' "$shards" "$N_BITS" "$(echo "$store_bytes/1048576" | bc -l)" "$MIB" "$(nproc)" "$PARALLEL"
printf '%-44s %9s %9s %10s %9s %10s\n' run seconds 'MiB/s' 'shards/s' 'cpu s' 'peak RSS'

NAMES=() CMDS=()
run() { NAMES+=("$1"); CMDS+=("$2"); }
run 'cat (read every shard, page cache)' "find '$STORE' -name '*.des' -print0 | xargs -0 cat >/dev/null"
run 'sha256sum (hash every shard)' "find '$STORE' -name '*.des' -print0 | xargs -0 -P $PARALLEL -n 64 sha256sum >/dev/null"
# What OPERATIONS.md suggested before --store: one `des verify SHARD` process per shard.
[ "${BENCH_PER_SHARD:-1}" = 1 ] && run 'xargs -P N des verify SHARD (local)' "find '$STORE' -name '*.des' -print0 | xargs -0 -n1 -P $PARALLEL node bin/des.js verify >/dev/null"
run 'des verify --store (local)' "node bin/des.js verify --store --base-dir '$STORE' --n-bits $N_BITS --parallel $PARALLEL --json >'$OUT/verify-local.jsonl'"
if [ "$S3" = 1 ]; then
  run 'GET every object (MinIO)' "node '$OUT/s3-read-all.js' '$BUCKET' des/ $PARALLEL"
  run 'des verify --store (MinIO)' "DES_BACKEND=s3 DES_S3_BUCKET=$BUCKET DES_S3_PREFIX=des/ DES_S3_ENDPOINT_URL=$DES_TEST_S3_ENDPOINT node bin/des.js verify --store --n-bits $N_BITS --parallel $PARALLEL --json >'$OUT/verify-s3.jsonl'"
fi

declare -A BEST RSS CPU
for ((round = 0; round < RUNS; round++)); do
  for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    /usr/bin/time -v -o "$OUT/time.txt" bash -c "${CMDS[$i]}" || { echo "$name failed (exit $?)"; tail -3 "$OUT"/verify-*.jsonl 2>/dev/null; exit 1; }
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/time.txt" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    if [ -z "${BEST[$name]:-}" ] || [ "$(echo "$wall < ${BEST[$name]}" | bc -l)" = 1 ]; then
      BEST[$name]=$wall
      RSS[$name]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time.txt")
      CPU[$name]=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$OUT/time.txt")
    fi
  done
done
for name in "${NAMES[@]}"; do
  printf '%-44s %9.2f %9.1f %10.0f %9.2f %6.0f MiB\n' "$name" "${BEST[$name]}" "$(echo "$store_bytes / 1048576 / ${BEST[$name]}" | bc -l)" \
    "$(echo "$shards / ${BEST[$name]}" | bc -l)" "${CPU[$name]}" "$(echo "${RSS[$name]}/1024" | bc -l)"
done
echo
echo "des verify's own summaries (last round; its clock starts after start-up):"
for f in "$OUT/verify-local.jsonl" ${BUCKET:+"$OUT/verify-s3.jsonl"}; do
  tail -1 "$f"
  grep -q '"problems":0,' "$f" || { echo "problems found in $f"; exit 1; }
done
echo
echo "command (local): node bin/des.js verify --store --base-dir $STORE --n-bits $N_BITS --parallel $PARALLEL --json"
if [ "$S3" = 1 ]; then
  echo "command (MinIO): DES_BACKEND=s3 DES_S3_BUCKET=$BUCKET DES_S3_PREFIX=des/ DES_S3_ENDPOINT_URL=$DES_TEST_S3_ENDPOINT node bin/des.js verify --store --n-bits $N_BITS --parallel $PARALLEL --json"
fi
