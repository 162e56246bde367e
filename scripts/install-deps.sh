#!/usr/bin/env bash
# install-deps.sh - install the Debian 12 packages Tessera needs to build, test and benchmark.
#
#   bash scripts/install-deps.sh              # build + test dependencies
#   WITH_BENCH=1 bash scripts/install-deps.sh # + the PyTorch baseline and perf
#
# Idempotent: when every package is already installed it exits at once, without apt-get update
# or any network access. Otherwise it runs apt-get update once and installs only what is missing.
# Runs as root (or through sudo). CUDA/NCCL are not Debian packages here: the build uses
# /usr/local/cuda when nvcc is present and is complete without it.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config                # compiler, CMake, pkg-config (cppzmq finds libzmq)
  openmpi-bin libopenmpi-dev                      # mpirun + MPI headers/libs
  libzmq3-dev cppzmq-dev                          # ZeroMQ transport
  libsodium-dev                                   # job secret, CURVE keys derived from it
  libprotobuf-dev protobuf-compiler               # wire header / control messages
  libboost-dev libboost-program-options-dev       # flags and --config
  libboost-context-dev                            # fibers of the emulated CUDA device
  libgtest-dev libgmock-dev libbenchmark-dev      # unit tests, micro-benchmarks
  libdnnl-dev                                     # oneDNN: the CTR dense layers on CPU
  libopenblas-dev                                 # BLAS of the emulated cuBLAS and the benchmark
  zlib1g-dev                                      # CRC-32 of checkpoint files
  python3 python3-numpy                           # integration tests, bench tooling
  clang-format                                    # formatting
  clang-14                                        # Clang thread-safety pass (scripts/)
  libclang-rt-14-dev                              # libFuzzer, ASan/UBSan/TSan runtimes (fuzz/)
)
if [[ "${WITH_BENCH:-0}" == 1 ]]; then
  pkgs+=(python3-torch linux-perf)                # PyTorch baseline of the benchmark, profiling
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi

# mpirun resolves localhost and this host's name; without /etc/hosts entries each lookup waits
# for a DNS timeout on an offline machine and every mpirun stalls for 10-30 s.
for host in localhost "$(hostname)"; do
  if ! getent hosts "$host" >/dev/null; then
    echo "127.0.0.1 $host" | "${sudo_cmd[@]}" tee -a /etc/hosts >/dev/null
    echo "install-deps: added '$host' to /etc/hosts"
  fi
done

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout: wait for another apt/dpkg instead of failing on its lock.
"${sudo_cmd[@]}" apt-get update -qq -o DPkg::Lock::Timeout=600
"${sudo_cmd[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends \
  "${missing[@]}"
echo "install-deps: done"
