#!/usr/bin/env bash
# Migration benchmark: ROWS small files on local disk listed in PostgreSQL,
# migrated to a local store; rows/s end to end and where the time goes.
#
#   bash bench/migrate.sh                     # 100,000 rows, batch 10,000, n_bits 8
#   ROWS=20000 BATCH=5000 bash bench/migrate.sh
#   ROWS=1000000 MIGRATORS=2 bash bench/migrate.sh   # two migrators at once on one table and store
#
# Needs the release addon (npm run build:native) and dist/ (npx tsc -p tsconfig.json).
# Split of time per cycle: database (select/claim, advisory locks, mark, commit,
# pending count), source checks (stat of every source), precheck (indexes of
# the touched keys before packing), pack (packFiles: reading sources,
# compressing, writing, fsync + rename), verify (indexes re-read), delete.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-100000}
BATCH=${BATCH:-10000}
N_BITS=${N_BITS:-8}
CODEC=${CODEC:-zstd}
MIGRATORS=${MIGRATORS:-1}
OUT=${BENCH_DIR:-$PWD/bench/out/migrate}
if [ -z "${DES_TEST_PG_URL:-}" ]; then eval "$(bash scripts/services/postgres.sh start)"; fi
[ -f dist/migrate/cycle.js ] || npx tsc -p tsconfig.json

echo "== generating $ROWS rows" >&2
node bench/migrate-gen.js --rows "$ROWS" --dir "$OUT" --db-url "$DES_TEST_PG_URL" --table des_bench.files

cat >"$OUT/migrate.yaml" <<YAML
database: { url: "\${DES_TEST_PG_URL}", table_name: des_bench.files }
migration: { archive_age_days: 7, batch_size: $BATCH, delete_source_files: false }
packer: { output_dir: "$OUT/store", n_bits: $N_BITS, codec: $CODEC }
YAML

echo "== migrating (batch $BATCH, n_bits $N_BITS, codec $CODEC, $MIGRATORS migrator(s)) on $(nproc) cores" >&2
if [ "$MIGRATORS" = 1 ]; then
  node bench/migrate-run.js "$OUT/migrate.yaml"
else
  # Each migrator claims its own batches (row locks) and takes turns on shared
  # keys (advisory locks); the rows/s that counts is all rows over the wall time.
  started=$(date +%s.%N)
  pids=()
  for i in $(seq "$MIGRATORS"); do
    node bench/migrate-run.js "$OUT/migrate.yaml" >"$OUT/run-$i.json" 2>"$OUT/run-$i.log" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  wall=$(echo "$(date +%s.%N) - $started" | bc -l)
  node -e '
    const fs = require("fs")
    const runs = process.argv.slice(1, -1).map((f) => JSON.parse(fs.readFileSync(f, "utf8")))
    const wall = Number(process.argv[process.argv.length - 1])
    const rows = runs.reduce((s, r) => s + r.rows, 0)
    console.log(JSON.stringify({ migrators: runs.length, rows, wall_seconds: Number(wall.toFixed(1)), rows_per_s: Math.round(rows / wall), each: runs }))
  ' $(for i in $(seq "$MIGRATORS"); do echo "$OUT/run-$i.json"; done) "$wall"
fi
echo "shards on disk: $(find "$OUT/store" -name '*.des' | wc -l), store size: $(du -sh "$OUT/store" | cut -f1)" >&2
