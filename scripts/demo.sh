#!/usr/bin/env bash
# The newcomer's first command: install, build, pack a small sample into a
# local store, look inside it, and serve it on http://127.0.0.1:8000.
# Needs no S3 and no database. Stop the server with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
demo=${DES_DEMO_DIR:-.des-demo}
port=${DES_DEMO_PORT:-8000}
rm -rf "$demo/store"

echo "== sample corpus and manifest" >&2
manifest=$(node scripts/make-sample.js "$demo" 300)

echo "== des pack" >&2
# 4 routing bits (16 shards a day) suit a sample this small; the default is 8.
node bin/des.js pack --input-json "$manifest" --output-dir "$demo/store" --n-bits 4

uid=invoice-1.json
created_at=2024-03-02T09:15:00Z
key=$(node bin/des.js locate "$uid" --created-at "$created_at" --n-bits 4 | node -e 'process.stdin.on("data",d=>console.log(JSON.parse(d).object_key))')
echo "== des ls $demo/store/$key (first lines)" >&2
node bin/des.js ls "$demo/store/$key" | head -5
echo "== des cat $demo/store/$key $uid (first lines)" >&2
node bin/des.js cat "$demo/store/$key" "$uid" | head -5

echo "== des serve on http://127.0.0.1:$port" >&2
echo "Try:  curl 'http://127.0.0.1:$port/files/$uid?created_at=$created_at'" >&2
DES_BACKEND=local DES_BASE_DIR="$demo/store" DES_N_BITS=4 exec node bin/des.js serve --host 127.0.0.1 --port "$port"
