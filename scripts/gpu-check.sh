#!/usr/bin/env bash
# gpu-check.sh - the GPU check of issue 13, for a GPU machine that is offline and may lack the
# Debian development packages. Uses a pack made beforehand by scripts/pack-gpu-check.sh (the
# binaries and the non-system libraries they need; CUDA runtime, cuBLAS and NCCL come from this
# machine's CUDA install) and writes everything under $OUT:
#
#   OUT=/path/to/results bash scripts/gpu-check.sh [--pack DIR] [--emulated] [--quick]
#
#   1. nvidia-smi                                 -> $OUT/nvidia-smi.txt
#   2. every gpu-labelled test of the pack        -> $OUT/tests/NAME.log, NAME.xml (gtest)
#   3. MF (planted ratings, 2 epochs of batch 4096: ~440 steps) and DeepFM (planted clicks,
#      3 epochs of batch 4096: ~260 steps), each on --device cpu and --device cuda with the same
#      flags; the final train losses must agree within 2 % (relative) and the test metric (RMSE,
#      AUC) within 0.01, else FAIL. GPU sums use atomics, so the runs are not bit-identical;
#      planted data keeps training stable, so the two end up within rounding-noise of each other.
#                                                  -> $OUT/train/*.log, *.jsonl
#   4. tessera_bench gpu                           -> $OUT/bench-gpu.txt, bench-gpu.jsonl
#   5. $OUT/summary.txt: one line per step (PASS / FAIL / SKIP, seconds, what), samples/s of each
#      training run, and the verdict. Exit 0 when nothing failed, 1 otherwise, 2 for bad usage,
#      3 when there is no GPU (and no --emulated).
#
# Every step runs under `timeout`, bounded by what is left of a 450 s budget (GPU_CHECK_BUDGET_S),
# so the whole check ends within 8 minutes; on one H100 it should take about 3.
# --pack DIR: where pack-gpu-check.sh put tessera-gpu-pack.tar.gz (default: shared/gpu-check).
# --emulated: a dry run here with a pack built by `pack-gpu-check.sh --emulated` (the emulated
#   device: no nvidia-smi, no CUDA libraries; sizes are cut so that it ends in minutes).
# --quick: smaller training runs (a smoke test of the script itself).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pack_dir="$repo/shared/gpu-check"
emulated=0
quick=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pack) pack_dir=$2; shift 2 ;;
    --emulated) emulated=1; shift ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "${OUT:-}" ]]; then
  echo "gpu-check: set OUT to the directory for the results" >&2
  exit 2
fi
mkdir -p "$OUT/tests" "$OUT/train"
summary="$OUT/summary.txt"
: >"$summary"
start_s=$SECONDS
failed=0

# Every step's `timeout` is its own limit or what is left of the 8 minutes (450 s after the
# start, leaving room for unpacking and cleaning up), whichever is smaller; a step that would get
# less than 5 s is skipped.
budget_s=${GPU_CHECK_BUDGET_S:-450}
left() {
  local step=$1 rest=$((budget_s - (SECONDS - start_s)))
  ((rest < 0)) && rest=0
  echo $((rest < step ? rest : step))
}
note() { echo "$*" | tee -a "$summary"; }
# result STATUS SECONDS WHAT
result() {
  printf '%-4s %5ss  %s\n' "$1" "$2" "$3" | tee -a "$summary"
  [[ "$1" == FAIL ]] && failed=1
  return 0
}

note "Tessera GPU check, $(date -u +%FT%TZ) on $(uname -n)"
pack="$pack_dir/tessera-gpu-pack.tar.gz"
if [[ ! -f "$pack" ]]; then
  note "FAIL: no pack at $pack (make it with scripts/pack-gpu-check.sh)"
  exit 1
fi
cp "$pack_dir/MANIFEST.txt" "$OUT/MANIFEST.txt" 2>/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$pack" || { note "FAIL: cannot unpack $pack"; exit 1; }
bin="$work/bin"

# Libraries: the pack's, then this machine's CUDA (runtime, cuBLAS, NCCL; the driver's libcuda
# is on the default path).
cuda_dirs=""
for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda/lib \
         /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu/nccl; do
  [[ -d "$d" && ":$cuda_dirs:" != *":$d:"* ]] && cuda_dirs="$cuda_dirs:$d"
done
for d in /usr/local/cuda-*/lib64; do
  [[ -d "$d" && ":$cuda_dirs:" != *":$d:"* ]] && cuda_dirs="$cuda_dirs:$d"
done
export LD_LIBRARY_PATH="$work/lib$cuda_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
note "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
missing=$(ldd "$bin"/* 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
if [[ -n "$missing" ]]; then
  note "FAIL: libraries not found on this machine: $missing(the pack needs the CUDA runtime and cuBLAS of the CUDA version it was built with; see MANIFEST.txt)"
  exit 1
fi

# 1. The device.
if [[ $emulated == 1 ]]; then
  export TESSERA_CUDA_EMU_DEVICES=${TESSERA_CUDA_EMU_DEVICES:-1}
  note "emulated device (dry run): TESSERA_CUDA_EMU_DEVICES=$TESSERA_CUDA_EMU_DEVICES"
  echo "emulated device: no nvidia-smi" >"$OUT/nvidia-smi.txt"
else
  if ! command -v nvidia-smi >/dev/null; then
    note "FAIL: no GPU: nvidia-smi not found (use --emulated with an emulated pack for a dry run)"
    exit 3
  fi
  if ! timeout 60 nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 ||
     ! grep -q "MiB" "$OUT/nvidia-smi.txt"; then
    note "FAIL: no GPU: nvidia-smi lists no device (see nvidia-smi.txt)"
    exit 3
  fi
  note "GPU: $(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total \
               --format=csv,noheader 2>/dev/null | head -1)"
fi

# 2. The gpu tests of the pack.
mpiexec=$(command -v mpirun || command -v mpiexec || true)
python3=$(command -v python3 || true)
while IFS=$'\t' read -r -a fields; do
  [[ ${#fields[@]} -ge 4 ]] || continue
  name=${fields[0]}; skip=${fields[1]}; envs=${fields[2]}
  cmd=("${fields[@]:3}")
  if [[ "${cmd[*]}" == *@MPIEXEC@* && -z "$mpiexec" ]]; then
    result SKIP 0 "test $name: no mpirun on this machine"
    continue
  fi
  if [[ "${cmd[*]}" == *@PYTHON3@* && -z "$python3" ]]; then
    result SKIP 0 "test $name: no python3 on this machine"
    continue
  fi
  for i in "${!cmd[@]}"; do
    c=${cmd[$i]//@PACK@/$work}
    c=${c//@MPIEXEC@/$mpiexec}
    c=${c//@PYTHON3@/$python3}
    cmd[i]=${c//@OUT@/$OUT}
  done
  [[ "${cmd[0]}" == "$bin"/* && "${cmd[*]}" == *--gtest_filter=* ]] &&
    cmd+=("--gtest_output=xml:$OUT/tests/$name.xml")
  env_args=()
  [[ "$envs" != "-" ]] && IFS=';' read -r -a env_args <<<"$envs"
  t0=$SECONDS
  limit=$(left 120)
  if ((limit < 5)); then result SKIP 0 "test $name: out of time"; continue; fi
  (cd "$work" && timeout "$limit" env "${env_args[@]}" "${cmd[@]}") </dev/null \
    >"$OUT/tests/$name.log" 2>&1
  rc=$?
  if [[ $rc == 0 ]]; then
    skipped=$(grep -c '^\[  SKIPPED \]' "$OUT/tests/$name.log")
    result PASS $((SECONDS - t0)) "test $name$([[ $skipped -gt 0 ]] && echo " ($skipped tests skipped themselves)")"
  elif [[ "$skip" != "-" && $rc == "$skip" ]]; then
    result SKIP $((SECONDS - t0)) "test $name (skipped itself, exit $rc)"
  else
    result FAIL $((SECONDS - t0)) "test $name: exit $rc$([[ $rc == 124 ]] && echo ' (timeout)'), see tests/$name.log"
  fi
done <"$work/tests.tsv"

# 3. Training on both devices.
data="$work/data"
if [[ $emulated == 1 || $quick == 1 ]]; then
  mf_gen=(--users 2000 --items 500 --ratings 40000)
  mf_train=(--dim 16 --epochs 2 --batch-size 512)
  ctr_gen=(--rows 20000)
  ctr_train=(--epochs 2 --batch-size 512 --mlp "64,64")
else
  mf_gen=(--users 20000 --items 4000 --ratings 1000000)
  mf_train=(--dim 32 --epochs 2 --batch-size 4096)
  ctr_gen=(--rows 400000)
  ctr_train=(--epochs 3 --batch-size 4096)
fi
t0=$SECONDS
if (($(left 60) < 5)); then
  result FAIL 0 "generate data: out of time"
elif timeout "$(left 60)" "$bin/tessera" gen ratings --out "$data/ratings" --seed 7 \
       "${mf_gen[@]}" >"$OUT/train/gen-ratings.log" 2>&1 &&
     timeout "$(left 60)" "$bin/tessera" gen criteo --out "$data/criteo" --seed 7 \
       "${ctr_gen[@]}" >"$OUT/train/gen-criteo.log" 2>&1; then
  result PASS $((SECONDS - t0)) "generate planted ratings and clicks"
else
  result FAIL $((SECONDS - t0)) "generate data, see train/gen-*.log"
fi

# field VALUE-NAME FILE: the number after "NAME": in the last line of FILE that has it.
field() { grep "\"$1\":" "$2" 2>/dev/null | tail -1 | sed -E "s/.*\"$1\":([^,}]*).*/\1/"; }
# train NAME DEVICE ARGS...: one run; its log and metrics under $OUT/train.
train() {
  local name=$1 device=$2
  shift 2
  local t0=$SECONDS rc=0 limit
  limit=$(left 120)
  if ((limit < 5)); then
    result FAIL 0 "train $name --device $device: out of time"
    return
  fi
  timeout "$limit" "$bin/tessera" train --device "$device" --metrics-out "$OUT/train/$name-$device.jsonl" \
    "$@" >"$OUT/train/$name-$device.log" 2>&1 || rc=$?
  if [[ $rc == 0 ]]; then
    result PASS $((SECONDS - t0)) "train $name --device $device: loss $(field loss "$OUT/train/$name-$device.jsonl"), $(field samples_per_sec "$OUT/train/$name-$device.jsonl") samples/s"
  else
    result FAIL $((SECONDS - t0)) "train $name --device $device: exit $rc, $(tail -1 "$OUT/train/$name-$device.log")"
  fi
}
# compare NAME METRIC: final train loss within 2 % relative, METRIC within 0.01 absolute.
compare() {
  local name=$1 metric=$2 a="$OUT/train/$1-cpu.jsonl" b="$OUT/train/$1-cuda.jsonl"
  local lc lg mc mg
  lc=$(field loss "$a"); lg=$(field loss "$b"); mc=$(field "$metric" "$a"); mg=$(field "$metric" "$b")
  if [[ -z "$lc" || -z "$lg" || -z "$mc" || -z "$mg" || "$lc" == null || "$lg" == null ]]; then
    result FAIL 0 "compare $name: missing figures (cpu loss '$lc' $metric '$mc', cuda loss '$lg' $metric '$mg')"
    return
  fi
  if awk -v a="$lc" -v b="$lg" -v c="$mc" -v d="$mg" 'BEGIN {
       rel = (a > b ? a - b : b - a) / (a > 0 ? a : 1); m = (c > d ? c - d : d - c);
       exit !(rel <= 0.02 && m <= 0.01) }'; then
    result PASS 0 "compare $name: train loss cpu $lc cuda $lg, $metric cpu $mc cuda $mg (tolerance 2 % / 0.01)"
  else
    result FAIL 0 "compare $name: train loss cpu $lc cuda $lg, $metric cpu $mc cuda $mg differ beyond 2 % / 0.01"
  fi
}
mf_args=(--train "$data/ratings/train.txt" --test "$data/ratings/test.txt" --seed 3 "${mf_train[@]}")
ctr_args=(--model deepfm --train "$data/criteo/train.tsv" --test "$data/criteo/test.tsv" --seed 3
          "${ctr_train[@]}")
for device in cpu cuda; do train mf "$device" "${mf_args[@]}"; done
compare mf rmse
for device in cpu cuda; do train deepfm "$device" "${ctr_args[@]}"; done
compare deepfm auc

# 4. The GPU benchmark.
t0=$SECONDS
rc=0
limit=$(left 120)
if ((limit < 5)); then
  result FAIL 0 "tessera_bench gpu: out of time"
else
  timeout "$limit" "$bin/tessera_bench" --json "$OUT/bench-gpu.jsonl" gpu \
    >"$OUT/bench-gpu.txt" 2>&1 || rc=$?
  if [[ $rc == 0 ]]; then
    result PASS $((SECONDS - t0)) "tessera_bench gpu (bench-gpu.txt)"
  else
    result FAIL $((SECONDS - t0)) "tessera_bench gpu: exit $rc, see bench-gpu.txt"
  fi
fi

note "total $((SECONDS - start_s)) s; verdict: $([[ $failed == 0 ]] && echo PASS || echo FAIL)"
exit $failed
