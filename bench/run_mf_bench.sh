#!/usr/bin/env bash
# The performance benchmark of the MF issue, in one invocation:
#   bench/run_mf_bench.sh [BUILD_DIR]          (default BUILD_DIR: <repo>/build-bench)
#
# 1. generates the planted set once (1M users x 100k items, 10M ratings, Zipf-skewed, rank 32)
#    into $BENCH_DIR/data (reused when present);
# 2. runs tessera_bench: ReadRatings lines/s, loopback pull/push next to raw ZeroMQ, table
#    memory per row, kernels;
# 3. runs `tessera train` in one process and under mpirun (1 scheduler + 1 server + 1 worker) at
#    dim 32 and 128, $REPS times each, alternating, and reads samples_per_sec from --metrics-out;
#    in rep 1 also in-process with --order shuffled (the general path; the default order is
#    blocked) and under mpirun with --shared-memory off (the frames through TCP loopback); each
#    rep starts with the MF ceiling (tessera_bench ceiling: FPSGD, 2 threads, bench/fpsgd.h) on
#    the same data and dim, so that Tessera's ratings/s is quoted as a fraction of it;
# 4. runs the PyTorch baseline (bench/torch_mf.py) on the same data;
# 5. with SCALING=1, the scaling curve of issue 15 (bench/run_mf_scaling.sh, long);
# 6. prints a summary with ratios and targets and writes it to $OUT/summary.txt.
#
# Environment: BENCH_DIR (default /tmp/tessera-bench), EPOCHS (3), REPS (2), BATCH (16384),
# TORCH_EPOCHS (2), TORCH_MAX_RATINGS (0 = all), SKIP_TORCH=1, SKIP_MPI=1, DIMS ("32 128"),
# CEILING_EPOCHS (4), SKIP_CEILING=1, SCALING=1 (and its variables: bench/run_mf_scaling.sh).
# Needs: mpirun (Open MPI), /usr/bin/python3 with python3-torch and python3-numpy (Debian).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$REPO/build-bench}
BENCH_DIR=${BENCH_DIR:-/tmp/tessera-bench}
EPOCHS=${EPOCHS:-3}
REPS=${REPS:-2}
BATCH=${BATCH:-16384}
TORCH_EPOCHS=${TORCH_EPOCHS:-2}
TORCH_MAX_RATINGS=${TORCH_MAX_RATINGS:-0}
CEILING_EPOCHS=${CEILING_EPOCHS:-4}
DIMS=${DIMS:-32 128}
PY=/usr/bin/python3
TESSERA=$BUILD/bin/tessera
BENCH=$BUILD/bin/tessera_bench
for bin in "$TESSERA" "$BENCH"; do
  [[ -x $bin ]] || { echo "missing $bin: build first (cmake --build $BUILD)" >&2; exit 2; }
done

DATA=$BENCH_DIR/data
GEN_FLAGS=(--users 1000000 --items 100000 --ratings 10000000 --rank 32 --noise 0.5 --seed 1)
# Same learning setup for tessera and PyTorch.
MODEL_FLAGS=(--batch-size "$BATCH" --lr 0.05 --l2 0.02 --l2-bias 0.01 --init-std 0.1)
OUT=$BENCH_DIR/results-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }

{
  echo "date: $(date -Is)"
  echo "host: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "checkout: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo ' + uncommitted changes outside bench/')"
  echo "build: $BUILD (sources: $(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null))"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "train flags: --epochs $EPOCHS ${MODEL_FLAGS[*]}"
} > "$OUT/machine.txt"

if [[ ! -s $DATA/train.txt || ! -s $DATA/truth.json ]]; then
  log "generating the planted set into $DATA: ${GEN_FLAGS[*]}"
  "$TESSERA" gen ratings "${GEN_FLAGS[@]}" --out "$DATA" > "$OUT/gen.log" 2>&1
fi

log "tessera_bench (read, net, memory, kernels)"
"$BENCH" --json "$OUT/bench.jsonl" --train "$DATA/train.txt" --reps 3 --seconds 2 \
  read net memory kernels 2>&1 | tee "$OUT/bench.txt"

run_train() {  # mode dim rep
  local mode=$1 dim=$2 rep=$3 tag="$1-d$2-r$3"
  local flags=(train --train "$DATA/train.txt" --test "$DATA/test.txt" --dim "$dim"
               --epochs "$EPOCHS" "${MODEL_FLAGS[@]}" --metrics-out "$OUT/train-$tag.json")
  rm -f "$OUT/train-$tag.json"
  if [[ $mode == inproc ]]; then
    "$TESSERA" "${flags[@]}" --servers 1 --workers 1 > "$OUT/train-$tag.log" 2>&1
  elif [[ $mode == shuffled ]]; then  # in-process, the general path: every rating shuffled
    "$TESSERA" "${flags[@]}" --servers 1 --workers 1 --order shuffled > "$OUT/train-$tag.log" 2>&1
  elif [[ $mode == mpi ]]; then
    mpirun --allow-run-as-root --oversubscribe -np 3 "$TESSERA" "${flags[@]}" --servers 1 \
      > "$OUT/train-$tag.log" 2>&1
  else  # mpitcp: the same with the frames through TCP loopback
    mpirun --allow-run-as-root --oversubscribe -np 3 "$TESSERA" "${flags[@]}" --servers 1 \
      --shared-memory off > "$OUT/train-$tag.log" 2>&1
  fi
  log "  $tag: $(grep -o '"samples_per_sec":[0-9.e+]*' "$OUT/train-$tag.json" | head -n "$EPOCHS" \
      | cut -d: -f2 | awk '{printf "%.2fM ", $1/1e6}')ratings/s by epoch"
}

run_ceiling() {  # dim rep: the same model, data and learning setup as run_train
  local dim=$1 rep=$2
  "$BENCH" ceiling --json "$OUT/ceiling.jsonl" --train "$DATA/train.txt" --test "$DATA/test.txt" \
    --dim "$dim" --epochs "$CEILING_EPOCHS" --threads 2 --lr 0.05 --l2 0.02 --l2-bias 0.01 \
    --init-std 0.1 > "$OUT/ceiling-d$dim-r$rep.txt" 2>&1
  log "  ceiling-d$dim-r$rep: $(grep '^median' "$OUT/ceiling-d$dim-r$rep.txt")"
}

for dim in $DIMS; do
  for rep in $(seq 1 "$REPS"); do
    log "tessera train dim $dim, rep $rep: the ceiling, in-process, then mpirun -np 3" \
      "(rep 1: also with --shared-memory off)"
    [[ ${SKIP_CEILING:-0} == 1 ]] || run_ceiling "$dim" "$rep"
    run_train inproc "$dim" "$rep"
    [[ $rep != 1 ]] || run_train shuffled "$dim" "$rep"
    [[ ${SKIP_MPI:-0} == 1 ]] || run_train mpi "$dim" "$rep"
    [[ ${SKIP_MPI:-0} == 1 || $rep != 1 ]] || run_train mpitcp "$dim" "$rep"
  done
done

if [[ ${SKIP_TORCH:-0} != 1 ]]; then
  for dim in $DIMS; do
    log "PyTorch baseline dim $dim ($TORCH_EPOCHS epochs, max ratings $TORCH_MAX_RATINGS)"
    "$PY" "$REPO/bench/torch_mf.py" --train "$DATA/train.txt" --test "$DATA/test.txt" \
      --dim "$dim" --epochs "$TORCH_EPOCHS" --threads 2 --max-ratings "$TORCH_MAX_RATINGS" \
      "${MODEL_FLAGS[@]}" > "$OUT/torch-d$dim.json" 2> "$OUT/torch-d$dim.log"
    log "  $(tail -n 1 "$OUT/torch-d$dim.json" | cut -c1-160)"
  done
fi
if [[ ${SCALING:-0} == 1 ]]; then
  log "scaling curve (bench/run_mf_scaling.sh)"
  BENCH_DIR=$BENCH_DIR bash "$REPO/bench/run_mf_scaling.sh" "$BUILD" "$OUT" 2>&1 |
    tee -a "$OUT/run.log"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"

"$PY" "$REPO/bench/summarize.py" "$OUT" | tee "$OUT/summary.txt"
cp "$OUT/summary.txt" "$BENCH_DIR/summary-latest.txt"
log "results in $OUT (summary.txt, bench.txt, train-*.json/log, torch-*.json)"
