#!/usr/bin/env bash
# sanitize-check.sh - the Clang sanitizer builds of CI (docs/FUZZING.md).
#
#   bash scripts/sanitize-check.sh             # ASan + UBSan into build-asan: the unit tests and
#                                              # the fuzz targets' seed corpora (ctest -L fuzz)
#   bash scripts/sanitize-check.sh --thread    # TSan into build-tsan: the in-process transport,
#                                              # server, scheduler and training-loop tests
#   BUILD_DIR=/tmp/ba JOBS=2 bash scripts/sanitize-check.sh -- -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
#
# Arguments after `--` go to the configure step. One build serves the unit tests and the fuzz
# targets: every library is compiled with -fsanitize=address,undefined (UBSan fatal) and
# -fsanitize=fuzzer-no-link (TESSERA_SANITIZE, TESSERA_FUZZ in CMakeLists.txt); CUDA and the
# benchmarks are off. Only the binaries the tests need are built. scripts/fuzz-campaign.sh then
# fuzzes the targets of build-asan. Any sanitizer report fails the test it happens in.
#
# TSan: Debian's libzmq is not instrumented, so TSan cannot see the ordering its I/O threads
# provide; the tests that run the ZeroMQ transport (names with Zmq or SharedTransport) and the
# mpirun ones are left out. scripts/tsan.supp lists what is suppressed and why (nothing so far).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
mode=address
if [[ "${1:-}" == --thread ]]; then
  mode=thread
  shift
fi
if [[ "${1:-}" == -- ]]; then shift; fi
jobs=${JOBS:-2}
clang=${CLANGXX:-clang++-14}
if ! command -v "$clang" >/dev/null; then
  echo "sanitize-check: $clang not found (bash scripts/install-deps.sh installs clang-14)" >&2
  exit 1
fi
cc=${clang/clang++/clang}

if [[ $mode == address ]]; then
  build_dir=${BUILD_DIR:-build-asan}
  sanitize=address,undefined
  fuzz=ON
  targets=(core_tests kernels_tests server_tests worker_tests train_loop_tests worker_data_tests
           scheduler_tests launch_tests fuzz_message fuzz_ratings fuzz_ctr_text fuzz_ctr_cache
           fuzz_manifest fuzz_row_file fuzz_npy fuzz_config)
else
  build_dir=${BUILD_DIR:-build-tsan}
  sanitize=thread
  fuzz=OFF
  targets=(core_tests server_tests worker_tests train_loop_tests worker_data_tests scheduler_tests)
fi

cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTESSERA_WERROR=ON \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$clang" -DTESSERA_WITH_CUDA=OFF \
  -DTESSERA_BUILD_BENCH=OFF -DTESSERA_SANITIZE="$sanitize" -DTESSERA_FUZZ="$fuzz" "$@" >/dev/null
cmake --build "$build_dir" -j"$jobs" --target "${targets[@]}"

# Every report fails: UBSan is fatal (-fno-sanitize-recover), ASan and TSan exit non-zero.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$repo/scripts/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export TSAN_OPTIONS="suppressions=$repo/scripts/tsan.supp:halt_on_error=1:second_deadlock_stack=1:${TSAN_OPTIONS:-}"
if [[ $mode == address ]]; then
  ctest --test-dir "$build_dir" -L 'unit|fuzz' -LE mpi --output-on-failure -j"$jobs"
else
  # Also out: the single-threaded data generators (a third of the time, nothing concurrent).
  ctest --test-dir "$build_dir" -L unit -LE mpi \
    -E 'Zmq|SharedTransport|ThreadSafetyCheck|CriteoGenTest|RatingGenTest' \
    --output-on-failure -j"$jobs"
fi
