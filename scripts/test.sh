#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, starts its own
# services (MinIO, PostgreSQL on 127.0.0.1), runs cargo and ava tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
eval "$(bash scripts/services/up.sh)"
trap 'bash scripts/services/up.sh stop >/dev/null 2>&1 || true' EXIT

echo "== cargo fmt / clippy / test" >&2
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet

echo "== ava" >&2
npx ava
