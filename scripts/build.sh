#!/usr/bin/env bash
# build.sh - configure and build Tessera (Release, warnings as errors, 2 jobs).
#
#   bash scripts/build.sh                          # into ./build (relative to the repo root)
#   BUILD_DIR=/tmp/tb bash scripts/build.sh        # elsewhere
#   bash scripts/build.sh -DTESSERA_WITH_CUDA=OFF  # extra arguments go to the configure step
#
# The binary is $BUILD_DIR/bin/tessera; `ctest --test-dir $BUILD_DIR` runs the tests.
# CUDA kernels are compiled when nvcc is found (/usr/local/cuda); the CPU build is complete
# without it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-2}

cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTESSERA_WERROR=ON "$@"
cmake --build "$build_dir" -j"$jobs"
