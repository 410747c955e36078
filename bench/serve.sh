#!/usr/bin/env bash
# des serve next to nginx on loopback, in the same run: N files of 1-64 KiB,
# packed with zstd into a local store for des serve and unpacked on disk for
# nginx; warm caches; random uids; wrk with a bounded duration per run.
#
#   bash bench/serve.sh                 # 10k files, 3 rounds of 10 s per server
#   N=10000 DUR=10 ROUNDS=3 CONNS=32 THREADS=2 WORKERS=2 bash bench/serve.sh
#   BUILD=1 bash bench/serve.sh         # rebuild the release addon first (~3 min)
#   PAYLOAD_CACHE=0 bash bench/serve.sh # decode on every request (no payload cache)
#   PAYLOAD_CACHE=67108864 bash bench/serve.sh # a cache a fifth of the set
#
# Rounds alternate des / nginx so both see the same machine load; each
# server's medians are reported, and the targets are checked on the median of
# the per-round des/nginx ratios (this 2-core VM moves by +-15% between
# rounds; a paired ratio cancels most of that). Request logging is off on both sides (nginx:
# access_log off; des: DES_LOG_LEVEL=warn). Fixture kept in $OUT between runs.
# A third server, bench/serve-ceiling.js (node:http answering from the raw
# files held in memory), shows what any Node server could do here (CEILING=0: skip).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services/lib.sh

N=${N:-10000}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
OUT=${DES_BENCH_DIR:-/tmp/des-bench-serve}
DES_PORT=${DES_BENCH_PORT:-18700}
NGINX_PORT=${NGINX_BENCH_PORT:-18701}
CEILING=${CEILING:-1}   # also measure bench/serve-ceiling.js (node:http from memory)
CEIL_PORT=${CEIL_BENCH_PORT:-18702}
# Decoded-payload cache of des serve per worker: auto (its default: an eighth
# of the memory limit shared by the workers, at most 1 GiB each), 0 = every
# request reads and decodes its payload, or a size in bytes. This 10k-file set
# decodes to ~325 MiB.
PAYLOAD_CACHE=${PAYLOAD_CACHE:-auto}

need_cmd wrk
need_cmd curl
if [ "${BUILD:-0}" = 1 ]; then log "building the release addon"; npm run build:native >&2; fi
log "building TypeScript"; npx tsc -p tsconfig.json >&2 || log "tsc reported errors (dist/ emitted anyway)"

if [ ! -s "$OUT/paths-des.txt" ] || [ "$(wc -l <"$OUT/paths-des.txt")" != "$N" ]; then
  log "making the fixture ($N files) in $OUT"
  npx tsx bench/serve-fixture.ts "$OUT" "$N" >&2
fi

bash scripts/services/nginx.sh start "$OUT/raw" "$NGINX_PORT" >/dev/null

DES_PID=
CEIL_PID=
cleanup() {
  [ -n "$DES_PID" ] && kill -TERM "$DES_PID" 2>/dev/null && wait "$DES_PID" 2>/dev/null || true
  [ -n "$CEIL_PID" ] && kill -TERM "$CEIL_PID" 2>/dev/null && wait "$CEIL_PID" 2>/dev/null || true
  bash scripts/services/nginx.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
DES_PAYLOAD_CACHE_BYTES="$PAYLOAD_CACHE" DES_BASE_DIR="$OUT/store" DES_LOG_LEVEL=warn node bin/des.js serve --host 127.0.0.1 --port "$DES_PORT" --workers "$WORKERS" >"$OUT/des-serve.log" 2>&1 &
DES_PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$DES_PORT/health" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$DES_PORT/health" || { cat "$OUT/des-serve.log" >&2; die "des serve did not start"; }

if [ "$CEILING" = 1 ]; then
  node bench/serve-ceiling.js "$OUT/raw" "$CEIL_PORT" "$WORKERS" &
  CEIL_PID=$!
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$CEIL_PORT/" && break; sleep 0.1; done
fi

# Same bytes from both? (one file, checked once)
one=$(head -1 "$OUT/paths-nginx.txt")
cmp <(curl -sf "http://127.0.0.1:$NGINX_PORT$one") <(curl -sf "http://127.0.0.1:$DES_PORT$(head -1 "$OUT/paths-des.txt")") || die "des and nginx disagree on $one"

wrk_cmd() { # PORT PATHS SECONDS
  echo wrk -t"$THREADS" -c"$CONNS" -d"$3"s --latency -s bench/serve-paths.lua "http://127.0.0.1:$1" -- "$2"
}
# wrk output -> "req_per_s p50_ms p99_ms"
measure() {
  $(wrk_cmd "$@") | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } $1 == "Requests/sec:" { rps = $2 }
    END { printf "%.0f %.2f %.2f\n", rps, p50, p99 }'
}

log "warming up (index cache, page cache)"
measure "$DES_PORT" "$OUT/paths-des.txt" 5 >/dev/null
measure "$NGINX_PORT" "$OUT/paths-nginx.txt" 5 >/dev/null
[ "$CEILING" = 1 ] && measure "$CEIL_PORT" "$OUT/paths-nginx.txt" 5 >/dev/null

: >"$OUT/rounds.txt"
for r in $(seq "$ROUNDS"); do
  d=$(measure "$DES_PORT" "$OUT/paths-des.txt" "$DUR")
  n=$(measure "$NGINX_PORT" "$OUT/paths-nginx.txt" "$DUR")
  echo "des $d" >>"$OUT/rounds.txt"
  echo "nginx $n" >>"$OUT/rounds.txt"
  c=
  if [ "$CEILING" = 1 ]; then c=$(measure "$CEIL_PORT" "$OUT/paths-nginx.txt" "$DUR"); echo "node $c" >>"$OUT/rounds.txt"; fi
  log "round $r: des $d | nginx $n${c:+ | node-ceiling $c}  (req/s p50_ms p99_ms)"
done

# Each column's median over the rounds (a round's p99 is not tied to its req/s).
median_col() { grep "^$1 " "$OUT/rounds.txt" | awk -v c="$2" '{ print $c }' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
medians() { echo "$(median_col "$1" 2) $(median_col "$1" 3) $(median_col "$1" 4)"; }
read -r d_rps d_p50 d_p99 <<<"$(medians des)"
read -r n_rps n_p50 n_p99 <<<"$(medians nginx)"
# The targets compare des with nginx round by round (same minute, same machine
# load), then take the median of those paired ratios.
paired() { # COLUMN -> median of des/nginx over rounds
  paste <(grep '^des ' "$OUT/rounds.txt" | awk -v c="$1" '{ print $c }') <(grep '^nginx ' "$OUT/rounds.txt" | awk -v c="$1" '{ print $c }') |
    awk '{ print $1 / $2 }' | sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] }'
}
each() { # COLUMN -> every round's des/nginx ratio
  paste <(grep '^des ' "$OUT/rounds.txt" | awk -v c="$1" '{ print $c }') <(grep '^nginx ' "$OUT/rounds.txt" | awk -v c="$1" '{ print $c }') |
    awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $2 }'
}

echo
echo "== des serve vs nginx: $N files 1-64 KiB (zstd in $(find "$OUT/store" -name '*.des' | wc -l) shards), $ROUNDS x ${DUR}s rounds, medians"
cache_bytes=$PAYLOAD_CACHE
[ "$PAYLOAD_CACHE" = auto ] && cache_bytes="auto = $(node -e "console.log(require('./dist/config/memory').autoPayloadCacheBytes($WORKERS))") per worker"
echo "   machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); des serve --workers $WORKERS, DES_PAYLOAD_CACHE_BYTES=$cache_bytes; nginx worker_processes 2"
printf '   %-10s %10s %10s %10s\n' server 'req/s' 'p50 ms' 'p99 ms'
printf '   %-10s %10s %10s %10s\n' "des serve" "$d_rps" "$d_p50" "$d_p99"
printf '   %-10s %10s %10s %10s\n' nginx "$n_rps" "$n_p50" "$n_p99"
if [ "$CEILING" = 1 ]; then
  read -r c_rps c_p50 c_p99 <<<"$(medians node)"
  printf '   %-10s %10s %10s %10s   (node:http, files in memory: no routing, index or decode)\n' node-ceil "$c_rps" "$c_p50" "$c_p99"
fi
echo "   req/s ratio des/nginx: $(paired 2) (target >= 0.50; median of the rounds' ratios: $(each 2))"
echo "   p99 ratio des/nginx:   $(paired 4) (target < 2.00; rounds: $(each 4))"
[ "$CEILING" = 1 ] && awk -v dr="$d_rps" -v cr="$c_rps" 'BEGIN { printf "   req/s ratio des/node-ceiling: %.2f\n", dr / cr }'
echo "   commands: $(wrk_cmd "$DES_PORT" "$OUT/paths-des.txt" "$DUR")"
echo "             $(wrk_cmd "$NGINX_PORT" "$OUT/paths-nginx.txt" "$DUR")"
