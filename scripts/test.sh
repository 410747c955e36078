#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, starts its own
# services (MinIO, PostgreSQL on 127.0.0.1), runs cargo and ava tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/install-kustomize.sh >/dev/null
bash scripts/install-promtool.sh >/dev/null
# strace kills an append at each of its writes (crates/des-core/tests/append.rs).
(. scripts/services/lib.sh && need_cmd strace)
eval "$(bash scripts/services/up.sh)"
trap 'bash scripts/services/up.sh stop >/dev/null 2>&1 || true' EXIT

log=$(mktemp -d)
echo "== cargo fmt / clippy / test" >&2
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
bash scripts/check-windows-build.sh
cargo test --workspace 2>&1 | tee "$log/cargo.txt" | grep -E '^(test result|failures|---- )|panicked' || true
cargo_ok=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$log/cargo.txt" | awk '{s+=$4} END {print s+0}')
if grep -q 'test result: FAILED' "$log/cargo.txt" || ! grep -q 'test result' "$log/cargo.txt"; then
  cat "$log/cargo.txt" >&2; echo "cargo test failed" >&2; exit 1
fi

echo "== ava" >&2
npx ava 2>&1 | tee "$log/ava.txt"
ava_ok=$(grep -Eo '[0-9]+ tests? passed' "$log/ava.txt" | awk '{print $1}' | tail -1)
echo "tests: $((cargo_ok + ${ava_ok:-0})) passed, 0 failed"
