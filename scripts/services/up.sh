#!/usr/bin/env bash
# Start every integration-test service and print their exports:
#   eval "$(scripts/services/up.sh)"        # start (installing/building if needed)
#   scripts/services/up.sh stop             # stop them all
# First run on a fresh machine builds MinIO from source (~3-4 min on 2 cores).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${1:-start}" in
  start) "$here/minio.sh" start; "$here/postgres.sh" start ;;
  stop) "$here/minio.sh" stop; "$here/postgres.sh" stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 1 ;;
esac
