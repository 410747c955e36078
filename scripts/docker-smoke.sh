#!/usr/bin/env bash
# Builds the image and fetches files through it.
#
#   bash scripts/docker-smoke.sh
#
# Where no container engine answers (`docker info` fails) it says so and exits
# 0: that is NOT a pass of the image, only "could not be tried here". Any real
# failure (build, pack, serve, wrong bytes) exits non-zero.
# Env: DES_SMOKE_IMAGE (des:smoke), DES_SMOKE_PORT (18000).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${DES_SMOKE_IMAGE:-des:smoke}
PORT=${DES_SMOKE_PORT:-18000}
log() { echo "[docker-smoke] $*" >&2; }

if ! command -v docker >/dev/null 2>&1; then
  echo "no container engine: image NOT built or tested (no docker CLI)"
  exit 0
fi
if ! docker info >/dev/null 2>&1; then
  echo "no container engine: image NOT built or tested (docker CLI present, but \`docker info\` gets no answer from an engine)"
  exit 0
fi

log "building $IMAGE"
docker build -t "$IMAGE" .

work=$(mktemp -d)
name=des-smoke-$$
cleanup() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A sample store, packed by the image itself from example_data/.
mkdir -p "$work/des"
chmod 0777 "$work/des"   # the container writes as uid 1000
if docker run --rm "$IMAGE" node bin/des.js --help | grep -qE '^\s+des pack\b'; then
  log "packing example_data with the image's des pack"
  docker run --rm \
    -v "$PWD/example_data/input:/data/input:ro" \
    -v "$PWD/example_data/manifests:/data/manifests:ro" \
    -v "$work/des:/data/output" \
    "$IMAGE" node bin/des.js pack --input-json /data/manifests/to-pack.json --output-dir /data/output
else
  log "no des pack command in the image yet: writing the shards with its JS API"
  docker run --rm \
    -v "$PWD/example_data/input:/data/input:ro" \
    -v "$PWD/example_data/manifests:/data/manifests:ro" \
    -v "$work/des:/data/output" \
    "$IMAGE" node -e '
      const { ShardWriter, locateShard } = require("/app/dist/index.js")
      const fs = require("node:fs"), path = require("node:path")
      ;(async () => {
        for (const f of JSON.parse(fs.readFileSync("/data/manifests/to-pack.json", "utf8"))) {
          const file = path.join("/data/output", locateShard(f.uid, f.created_at, 8).objectKey)
          fs.mkdirSync(path.dirname(file), { recursive: true })
          const w = await ShardWriter.append(file)
          await w.add(f.uid, fs.readFileSync(f.source_path))
          await w.finish()
        }
      })().catch((e) => { console.error(e); process.exit(1) })'
fi

log "serving the store on 127.0.0.1:$PORT"
docker run -d --name "$name" -p "127.0.0.1:$PORT:8000" -v "$work/des:/data/des:ro" "$IMAGE" >/dev/null
for i in $(seq 1 60); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break
  [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || { docker logs "$name" >&2; log "FAIL: container exited"; exit 1; }
  [ "$i" = 60 ] && { docker logs "$name" >&2; log "FAIL: /health not up after 30 s"; exit 1; }
  sleep 0.5
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/ready" || { log "FAIL: /ready"; exit 1; }

# Every file of the manifest comes back byte-exact (source_path is the path in the container).
fails=0
while IFS=$'\t' read -r uid created_at source; do
  local_file=example_data/input/${source#/data/input/}
  if curl -sf "http://127.0.0.1:$PORT/files/$uid?created_at=$created_at" -o "$work/got" && cmp -s "$work/got" "$local_file"; then
    log "ok $uid"
  else
    log "FAIL: $uid does not come back as $local_file"; fails=$((fails + 1))
  fi
done < <(node -e 'for (const f of require("./example_data/manifests/to-pack.json")) console.log([f.uid, f.created_at, f.source_path].join("\t"))')
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/files/no-such-uid?created_at=2024-01-01T00:00:00Z")
[ "$code" = 404 ] || { log "FAIL: unknown uid gave $code, not 404"; fails=$((fails + 1)); }
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -q '^des_retrievals_total' || { log "FAIL: /metrics has no des_retrievals_total"; fails=$((fails + 1)); }

user=$(docker inspect -f '{{.Config.User}}' "$IMAGE")
[ "$user" = 1000:1000 ] || { log "FAIL: image user is '$user'"; fails=$((fails + 1)); }
[ "$fails" = 0 ] || { docker logs "$name" >&2; exit 1; }
echo "docker smoke: image $IMAGE built, packed example_data and served it back byte-exact"
