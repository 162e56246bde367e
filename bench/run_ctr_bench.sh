#!/usr/bin/env bash
# The CTR (DeepFM) performance benchmark of the CTR issue, in one invocation:
#   bench/run_ctr_bench.sh [BUILD_DIR]          (default BUILD_DIR: <repo>/build-bench)
#
# 1. generates the planted Criteo-format set once (`tessera gen criteo --rows $ROWS --seed 1`,
#    90% train / 10% test) into $BENCH_DIR/criteo-$ROWS (reused when present);
# 2. tessera_bench blas: GFLOP/s for the MLP's products (429-400-400-400-1, batch 4096: forward,
#    dW, dx per layer) and the whole-step rate, through OpenBLAS as found (the kernel it picked
#    for this processor), through OpenBLAS with its AVX-512 kernel forced
#    (OPENBLAS_CORETYPE=SkylakeX, where the processor has AVX-512), through oneDNN's matmul
#    primitives, which tessera's dense layers use, and through oneDNN's sgemm call; each
#    library's choice is recorded (blas*.txt);
# 3. `tessera train --model deepfm` (26 fields, dim 16, MLP 400-400-400, batch 4096, 1 epoch,
#    Adam everywhere at lr 0.001 as the issue and the PyTorch baseline: lazy Adam on both sparse
#    tables (`--linear-optimizer adam --linear-lr 0.001`; tessera's first-order default is FTRL),
#    Adam on the dense parameters) in one process
#    (1 server + 1 worker) and under mpirun -np 4 (scheduler + 1 server + 2 workers), reading
#    samples_per_sec and the test AUC from --metrics-out;
# 4. the PyTorch baseline (bench/torch_deepfm.py, 2 threads) on the same files; then 3 and 4
#    for each other model of $MODELS (default: dcn_v2, 3 full-rank cross layers beside the same
#    MLP), tagged "dcn_v2-...";
# 5. when OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set (these machines set them for
#    compatibility, which holds OpenBLAS to older kernels), repeats 2, 3 and 4 with both unset
#    for those commands only (labelled "-unset"; PyTorch's libblas.so.3 is OpenBLAS too, so its
#    baseline is rerun the same way and the "-unset" rows are compared with it);
# 6. prints a summary with ratios and targets (bench/summarize_ctr.py) into $OUT/summary.txt.
#
# Environment: BENCH_DIR (default /tmp/tessera-bench), ROWS (1000000), REPS (1), MODELS
# ("deepfm dcn_v2"), SKIP_TORCH=1,
# SKIP_MPI=1, SKIP_UNSET=1, TORCH_MAX_ROWS (0 = all).
# Needs: mpirun (Open MPI), /usr/bin/python3 with python3-torch and python3-numpy (Debian).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$REPO/build-bench}
BENCH_DIR=${BENCH_DIR:-/tmp/tessera-bench}
ROWS=${ROWS:-1000000}
REPS=${REPS:-1}
TORCH_MAX_ROWS=${TORCH_MAX_ROWS:-0}
PY=/usr/bin/python3
TESSERA=$BUILD/bin/tessera
BENCH=$BUILD/bin/tessera_bench
for bin in "$TESSERA" "$BENCH"; do
  [[ -x $bin ]] || { echo "missing $bin: build first (cmake --build $BUILD)" >&2; exit 2; }
done

DATA=$BENCH_DIR/criteo-$ROWS
MODEL_FLAGS=(--emb-dim 16 --mlp 400,400,400 --batch-size 4096 --epochs 1
             --linear-optimizer adam --linear-lr 0.001)
# DCN-v2 (3 full-rank cross layers beside the same MLP) after DeepFM; MODELS=deepfm for DeepFM only.
MODELS=${MODELS:-deepfm dcn_v2}
OUT=$BENCH_DIR/ctr-results-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }
UNSET=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)

{
  echo "date: $(date -Is)"
  echo "host: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "checkout: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- . ':!bench' ':!docs' 2>/dev/null || echo ' + uncommitted changes outside bench/ and docs/')"
  echo "build: $BUILD"
  echo "openblas: $(ldd "$BENCH" | awk "/openblas/{print \$3}") -> $(readlink -f "$(ldd "$BENCH" | awk "/openblas/{print \$3}")")"
  echo "onednn: $(ldd "$TESSERA" | awk "/dnnl/{print \$3}") -> $(readlink -f "$(ldd "$TESSERA" | awk "/dnnl/{print \$3}")")"
  echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-<unset>} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-<unset>}"
  echo "OpenBLAS picked: $(OPENBLAS_VERBOSE=2 "$BENCH" --reps 1 --seconds 0.01 --mlp 8 --mlp-batch 8 blas 2>&1 | sed -n 's/^Core: *//p' | head -1)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "data: $DATA (tessera gen criteo --rows $ROWS --seed 1)"
  echo "train flags: --model $MODELS (in turn) ${MODEL_FLAGS[*]}"
} > "$OUT/machine.txt"

if [[ ! -s $DATA/train.tsv || ! -s $DATA/truth.json ]]; then
  log "generating $ROWS Criteo-format rows into $DATA"
  "$TESSERA" gen criteo --rows "$ROWS" --seed 1 --out "$DATA" > "$OUT/gen.log" 2>&1
fi

log "tessera_bench blas (MLP shapes, batch 4096)"
"$BENCH" --json "$OUT/blas.jsonl" --reps 3 --seconds 2 blas 2>&1 | tee "$OUT/blas.txt"
if grep -q avx512f /proc/cpuinfo; then
  log "tessera_bench blas with OpenBLAS's AVX-512 kernel forced (OPENBLAS_CORETYPE=SkylakeX)"
  OPENBLAS_CORETYPE=SkylakeX "$BENCH" --json "$OUT/blas-forced.jsonl" --reps 3 --seconds 2 blas \
    2>&1 | tee "$OUT/blas-forced.txt"
fi

run_train() {  # tag mode [env prefix...]; DeepFM, or the model of $MODEL (tags "MODEL-...")
  local tag=$1 mode=$2
  shift 2
  local flags=(train "${MODEL_FLAGS[@]}" --model "${MODEL:-deepfm}" --train "$DATA/train.tsv"
               --test "$DATA/test.tsv" --metrics-out "$OUT/train-$tag.json")
  rm -f "$OUT/train-$tag.json"
  if [[ $mode == inproc ]]; then
    "$@" "$TESSERA" "${flags[@]}" --servers 1 --workers 1 > "$OUT/train-$tag.log" 2>&1
  else
    "$@" mpirun --allow-run-as-root --oversubscribe -np 4 "$TESSERA" "${flags[@]}" --servers 1 \
      > "$OUT/train-$tag.log" 2>&1
  fi
  log "  $tag: $(grep '"event":"done"' "$OUT/train-$tag.json" | cut -c1-200)"
}

MODEL=deepfm
for rep in $(seq 1 "$REPS"); do
  log "tessera train deepfm, rep $rep: in-process (1 server + 1 worker), then mpirun -np 4"
  run_train "inproc-r$rep" inproc
  [[ ${SKIP_MPI:-0} == 1 ]] || run_train "mpi-r$rep" mpi
done

run_torch() {  # tag [env prefix...]
  local tag=$1
  shift
  [[ ${SKIP_TORCH:-0} == 1 ]] && return 0
  if ! "$PY" -c "import torch" 2>/dev/null; then
    log "python3-torch is not installed (WITH_BENCH=1 scripts/install-deps.sh): no PyTorch $tag"
    return 0
  fi
  log "PyTorch baseline $tag (2 threads, max rows $TORCH_MAX_ROWS)"
  "$@" "$PY" "$REPO/bench/torch_deepfm.py" --model "${MODEL:-deepfm}" --train "$DATA/train.tsv" \
    --test "$DATA/test.tsv" --threads 2 --max-rows "$TORCH_MAX_ROWS" > "$OUT/$tag.json" \
    2> "$OUT/$tag.log"
  log "  $(tail -n 1 "$OUT/$tag.json" | cut -c1-240)"
}
run_torch torch

# The other models: tessera in one process and under mpirun, and PyTorch, tagged by the model.
for MODEL in $MODELS; do
  [[ $MODEL == deepfm ]] && continue
  log "tessera train $MODEL: in-process, then mpirun -np 4; PyTorch"
  run_train "$MODEL-inproc-r1" inproc
  [[ ${SKIP_MPI:-0} == 1 ]] || run_train "$MODEL-mpi-r1" mpi
  run_torch "$MODEL-torch"
done
unset MODEL

if [[ ${SKIP_UNSET:-0} != 1 ]]; then
  if [[ -n ${OPENBLAS_CORETYPE+x} || -n ${OPENBLAS_L2_SIZE+x} ]]; then
    log "again with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for these commands only"
    "${UNSET[@]}" "$BENCH" --json "$OUT/blas-unset.jsonl" --reps 3 --seconds 2 blas 2>&1 \
      | tee "$OUT/blas-unset.txt"
    run_train "inproc-unset" inproc "${UNSET[@]}"
    [[ ${SKIP_MPI:-0} == 1 ]] || run_train "mpi-unset" mpi "${UNSET[@]}"
    run_torch torch-unset "${UNSET[@]}"
  else
    log "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE not set here: no separate unset run"
  fi
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"

"$PY" "$REPO/bench/summarize_ctr.py" "$OUT" | tee "$OUT/summary.txt"
cp "$OUT/summary.txt" "$BENCH_DIR/ctr-summary-latest.txt"
log "results in $OUT (summary.txt, blas*.txt, train-*.json/log, torch*.json)"
