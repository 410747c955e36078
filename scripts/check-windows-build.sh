#!/usr/bin/env bash
# des-core and its tests compile for Windows, warning-free: code for Linux or
# Unix only (O_DIRECT, sync_file_range, libc, which is a Linux-only
# dependency, Unix file APIs in tests) must stay behind its cfg. The release
# builds Windows and macOS addons; this catches a slip here, on Linux, before
# a release does. Needs the Windows GNU target (rustup) and MinGW's gcc
# (zstd's C sources are built even for a check).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services/lib.sh
target=x86_64-pc-windows-gnu
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  if ! timeout 300 rustup target add "$target" >/dev/null 2>&1; then
    echo "check-windows-build: SKIPPED: the $target target could not be installed (rustup)" >&2
    exit 0
  fi
fi
need_cmd x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
RUSTFLAGS="-D warnings" cargo check -p des-core --all-targets --target "$target" --quiet
echo "check-windows-build: des-core and its tests compile for $target" >&2
