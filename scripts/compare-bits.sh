#!/usr/bin/env bash
# compare-bits.sh - build the commit before a change and the tree now, and show that every
# deterministic run, generated file, cache, checkpoint and export gives the same bits
# (scripts/compare_bits.py does the comparing).
#
#   bash scripts/compare-bits.sh BASE_COMMIT            # e.g. 8ed4832; in-process runs
#   MPI=1 bash scripts/compare-bits.sh BASE_COMMIT      # + runs under mpirun
#
# BASE_COMMIT is checked out into a temporary git worktree and built there with CUDA off (the
# compared paths are the CPU ones); the current tree is built into $BUILD_DIR (default ./build).
# Exit 0 when every comparison holds.
set -euo pipefail

base=${1:?usage: compare-bits.sh BASE_COMMIT}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build_dir=${BUILD_DIR:-build}
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-compare-XXXXXX")
cleanup() {
  git worktree remove --force "$work/src" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

git worktree add --detach "$work/src" "$base" >/dev/null
echo "compare-bits: building $base in $work"
BUILD_DIR="$work/build" bash "$work/src/scripts/build.sh" -DTESSERA_WITH_CUDA=OFF \
  -DTESSERA_BUILD_BENCH=OFF >"$work/build.log" 2>&1 || {
  tail -n 30 "$work/build.log"
  exit 1
}
echo "compare-bits: building the current tree in $build_dir"
BUILD_DIR="$build_dir" bash scripts/build.sh >/dev/null
python3 scripts/compare_bits.py --old "$work/build/bin/tessera" --new "$build_dir/bin/tessera" \
  ${MPI:+--mpi}
