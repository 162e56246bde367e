#!/usr/bin/env bash
# Runs a Tessera job as separate processes on this machine (or on the hosts of an mpirun
# hostfile): 1 scheduler + S servers + W workers, roles by rank, ZeroMQ between them.
#
#   launch/tessera-mpirun.sh -s 2 -w 2 -- --train ratings.txt --test test.txt --dim 32
#
# Environment: TESSERA (path of the binary, default ./build/bin/tessera), MPIRUN_ARGS (extra
# mpirun arguments, e.g. "--hostfile hosts").
set -euo pipefail
servers=1
workers=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    -s) servers=$2; shift 2 ;;
    -w) workers=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 -s SERVERS -w WORKERS -- [tessera train options]" >&2; exit 2 ;;
  esac
done
tessera=${TESSERA:-./build/bin/tessera}
np=$((1 + servers + workers))
extra=()
# Root needs --allow-run-as-root; more ranks than cores need --oversubscribe (which also makes
# idle ranks yield the CPU instead of spinning).
[[ $(id -u) -eq 0 ]] && extra+=(--allow-run-as-root)
extra+=(--oversubscribe)
# shellcheck disable=SC2086
exec mpirun "${extra[@]}" ${MPIRUN_ARGS:-} -np "$np" "$tessera" train --servers "$servers" "$@"
