#!/usr/bin/env bash
# interleave.sh - old binary against new, alternating, on the workloads of run_mf_bench.sh and
# run_ctr_bench.sh: old, new, old, new, ... REPS times each, and the median samples/s of each.
# Alternating spreads the machine's drift (other load, turbo, page cache) over both binaries.
#
#   bench/interleave.sh OLD/bin/tessera NEW/bin/tessera
#   REPS=5 MF_RATINGS=10000000 CTR_ROWS=1000000 bench/interleave.sh OLD NEW
#   WORKLOADS=deepfm REPS=5 bench/interleave.sh OLD NEW     # one workload only
#   MF_EPOCHS=8 REPS=30 WORKLOADS=mf128 bench/interleave.sh OLD NEW   # a small cost, bounded
#
# Workloads (the benchmarks' flags; smaller data by default so a rep takes seconds):
#   mf32   MF dim 32, batch 16384, 1 server + 1 worker in one process
#   mf128  the same at dim 128
#   deepfm DeepFM emb 16, MLP 400-400-400, batch 4096, Adam on both tables, one process
# and the same under mpirun, where frames cross ZeroMQ (authenticated from issue 14 on):
#   mf32-mpi     mf32, mpirun -np 3 (scheduler, server, worker), large frames in shared memory
#   mf32-tcp     mf32-mpi with --shared-memory off: every frame through TCP loopback
#   deepfm-mpi   deepfm, mpirun -np 4 (scheduler, server, 2 workers)
# Prints a table: workload, the median of each binary, new/old; then the pairs (old and new run
# back to back): the median and geometric mean of their ratios with a bootstrap 95 % interval of
# the mean, and for MF the ratio of the binaries' 90th percentiles over every epoch after the
# first (interference from other tenants only slows a run down, so the fast epochs are the ones
# least disturbed). Data and logs in $BENCH_DIR.
set -euo pipefail

old=${1:?usage: interleave.sh OLD_TESSERA NEW_TESSERA}
new=${2:?usage: interleave.sh OLD_TESSERA NEW_TESSERA}
REPS=${REPS:-3}
WORKLOADS=${WORKLOADS:-mf32 mf128 deepfm}
MF_RATINGS=${MF_RATINGS:-3000000}
MF_EPOCHS=${MF_EPOCHS:-3}
CTR_ROWS=${CTR_ROWS:-200000}
BENCH_DIR=${BENCH_DIR:-/tmp/tessera-bench}
out=$BENCH_DIR/interleave-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

mf_data=$BENCH_DIR/mf-$MF_RATINGS
if [[ ! -s $mf_data/train.txt ]]; then
  "$new" gen ratings --users $((MF_RATINGS / 10)) --items $((MF_RATINGS / 100)) \
    --ratings "$MF_RATINGS" --rank 32 --noise 0.5 --seed 1 --out "$mf_data" >"$out/gen-mf.log" 2>&1
fi
ctr_data=$BENCH_DIR/criteo-$CTR_ROWS
if [[ ! -s $ctr_data/train.tsv ]]; then
  "$new" gen criteo --rows "$CTR_ROWS" --seed 1 --out "$ctr_data" >"$out/gen-ctr.log" 2>&1
fi

mf_flags=(--train "$mf_data/train.txt" --test "$mf_data/test.txt" --epochs "$MF_EPOCHS" --batch-size 16384
          --lr 0.05 --l2 0.02 --l2-bias 0.01 --init-std 0.1 --servers 1)
ctr_flags=(--model deepfm --emb-dim 16 --mlp 400,400,400 --batch-size 4096 --epochs 1
           --linear-optimizer adam --linear-lr 0.001 --train "$ctr_data/train.tsv"
           --test "$ctr_data/test.tsv" --servers 1)

mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none)

# samples/s of one run: MF the mean of its epochs after the first (rows exist), CTR its done record.
rate() {  # workload metrics-file
  python3 - "$1" "$2" <<'EOF'
import json, sys
records = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
if sys.argv[1].startswith("mf"):
    rates = [r["samples_per_sec"] for r in records if r.get("event") == "train"][1:]
    print(sum(rates) / len(rates))
else:
    print([r for r in records if r.get("event") == "done"][-1]["samples_per_sec"])
EOF
}

run() {  # workload binary-tag binary rep
  local workload=$1 tag=$2 bin=$3 rep=$4
  local metrics=$out/$workload-$tag-$rep.jsonl
  case $workload in
    mf32) "$bin" train "${mf_flags[@]}" --workers 1 --dim 32 --metrics-out "$metrics" ;;
    mf128) "$bin" train "${mf_flags[@]}" --workers 1 --dim 128 --metrics-out "$metrics" ;;
    deepfm) "$bin" train "${ctr_flags[@]}" --workers 1 --metrics-out "$metrics" ;;
    mf32-mpi) "${mpi[@]}" -np 3 "$bin" train "${mf_flags[@]}" --dim 32 \
      --metrics-out "$metrics" ;;
    mf32-tcp) "${mpi[@]}" -np 3 "$bin" train "${mf_flags[@]}" --dim 32 --shared-memory off \
      --metrics-out "$metrics" ;;
    deepfm-mpi) "${mpi[@]}" -np 4 "$bin" train "${ctr_flags[@]}" --metrics-out "$metrics" ;;
  esac >"$out/$workload-$tag-$rep.log" 2>&1
  echo "$workload $tag $(rate "$workload" "$metrics")" | tee -a "$out/rates.txt"
}

{
  echo "date: $(date -Is)"
  echo "host: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
  echo "old: $old"
  echo "new: $new"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/machine.txt"
for workload in $WORKLOADS; do
  for rep in $(seq 1 "$REPS"); do
    run "$workload" old "$old" "$rep"
    run "$workload" new "$new" "$rep"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"

python3 "$(dirname "$0")/interleave_summary.py" "$out" | tee "$out/summary.txt"
echo "files: $out"
