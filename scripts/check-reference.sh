#!/usr/bin/env bash
# Compatibility with the original Python DES, both ways, with its own code:
#   scripts/check-reference.sh REF_DIR
# REF_DIR is a checkout of the original (it has src/des_core/shard_io.py);
# nothing of it is copied into this repository. Its Python dependencies go
# into a virtualenv ($DES_REF_VENV, default /tmp/des-ref-venv).
#  1. our writer (none, zstd, lz4, BigFiles, a shard written past the page
#     cache, an append replacing an entry, an append in place cut short: it
#     reads as the shard before it)
#     -> the original's ShardReader reads every entry byte-exact;
#  2. the original's ShardWriter -> our reader byte-exact, `des verify` clean;
#     then our append to those shards -> the original reads them again.
set -euo pipefail
ref=${1:?usage: scripts/check-reference.sh REF_DIR (a checkout of the original Python DES)}
[ -f "$ref/src/des_core/shard_io.py" ] || { echo "check-reference: $ref has no src/des_core/shard_io.py" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
venv=${DES_REF_VENV:-/tmp/des-ref-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  # Its runtime dependencies as its pyproject.toml lists them.
  "$venv/bin/python" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$ref/pyproject.toml" >"$venv/reference-requirements.txt"
  # Its requirements.txt too: it imports some (requests) that pyproject.toml omits.
  "$venv/bin/pip" install -q -r "$venv/reference-requirements.txt" -r "$ref/requirements.txt"
fi
py() { PYTHONPATH="$ref/src" "$venv/bin/python" "$here/reference/roundtrip.py" "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ours" "$work/theirs"
node "$here/reference/roundtrip.js" write "$work/ours"
py read "$work/ours"
py write "$work/theirs"
node "$here/reference/roundtrip.js" read "$work/theirs"
py read "$work/theirs"
echo "check-reference: both ways byte-exact"
