#!/usr/bin/env bash
# The scaling curve of issue 15 (point 4), a long optional stage of bench/run_mf_bench.sh
# (SCALING=1), or alone:  bench/run_mf_scaling.sh BUILD_DIR OUT_DIR
#
# 1. Table size: for each total row count R in $SCALING_ROWS (users = 10/11 R, items = 1/11 R),
#    a planted set of $SCALING_RATINGS ratings (tessera gen ratings, rank 32, into
#    $BENCH_DIR/scale-R-RATINGS, reused), then the MF ceiling and `tessera train` in one process
#    at dim 32: steady ratings/s, epoch 1 (which creates the rows), and resident bytes per row = the
#    process's peak RSS / the rows the servers hold at the end (the RSS includes the data and
#    the worker, so small tables overstate it).
# 2. Processes: on $BENCH_DIR/data (run_mf_bench.sh's set), under mpirun with S servers and W
#    workers for each S+W in $SCALING_PROCS (1 scheduler + S + W ranks on this host): steady
#    ratings/s.
# One JSON line per figure in OUT_DIR/scaling.jsonl (bench/summarize.py prints them).
#
# Environment: SCALING_ROWS ("100000 1000000 10000000 50000000"; 5e7 rows need ~20 GB),
# SCALING_RATINGS (10000000), SCALING_EPOCHS (3), SCALING_PROCS ("1+1 1+2 2+2 2+4"),
# BATCH (16384), BENCH_DIR (/tmp/tessera-bench).
set -euo pipefail

BUILD=${1:?usage: run_mf_scaling.sh BUILD_DIR OUT_DIR}
OUT=${2:?usage: run_mf_scaling.sh BUILD_DIR OUT_DIR}
BENCH_DIR=${BENCH_DIR:-/tmp/tessera-bench}
ROWS=${SCALING_ROWS:-100000 1000000 10000000 50000000}
RATINGS=${SCALING_RATINGS:-10000000}
EPOCHS=${SCALING_EPOCHS:-3}
PROCS=${SCALING_PROCS:-1+1 1+2 2+2 2+4}
BATCH=${BATCH:-16384}
TESSERA=$BUILD/bin/tessera
BENCH=$BUILD/bin/tessera_bench
MODEL_FLAGS=(--batch-size "$BATCH" --lr 0.05 --l2 0.02 --l2-bias 0.01 --init-std 0.1 --dim 32)
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*"; }

# "first steady" samples_per_sec of the train events of a --metrics-out file.
rates() {
  grep '"event":"train"' "$1" | grep -o '"samples_per_sec":[0-9.e+]*' | cut -d: -f2 |
    awk 'NR == 1 { first = $1; next } { sum += $1; n++ }
         END { if (n == 0) { sum = first; n = 1 }; printf "%.0f %.0f\n", first, sum / n }'
}

for rows in $ROWS; do
  users=$((rows * 10 / 11))
  items=$((rows - users))
  data=$BENCH_DIR/scale-$rows-$RATINGS
  if [[ ! -s $data/train.txt ]]; then
    log "generating $data: $users users x $items items, $RATINGS ratings"
    "$TESSERA" gen ratings --users "$users" --items "$items" --ratings "$RATINGS" --rank 32 \
      --noise 0.5 --seed 3 --out "$data" > "$OUT/scale-$rows-gen.log" 2>&1
  fi
  "$BENCH" ceiling --train "$data/train.txt" --test "$data/test.txt" --dim 32 --epochs "$EPOCHS" \
    --json "$OUT/scale-$rows-ceiling.jsonl" > "$OUT/scale-$rows-ceiling.txt" 2>&1
  ceiling=$(grep -o '"bench":"ceiling".*' "$OUT/scale-$rows-ceiling.jsonl" |
            grep -o '"updates_per_sec":[0-9.e+]*' | cut -d: -f2)
  rm -f "$OUT/scale-$rows.json"
  /usr/bin/time -f "maxrss_kb %M" "$TESSERA" train --train "$data/train.txt" \
    --test "$data/test.txt" --epochs "$EPOCHS" "${MODEL_FLAGS[@]}" --servers 1 --workers 1 \
    --metrics-out "$OUT/scale-$rows.json" > "$OUT/scale-$rows.log" 2>&1
  read -r first steady < <(rates "$OUT/scale-$rows.json")
  rss_kb=$(sed -n 's/^maxrss_kb //p' "$OUT/scale-$rows.log")
  held=$(grep -o 'stopped: [0-9]* rows' "$OUT/scale-$rows.log" | awk '{s += $2} END {print s}')
  bpr=$(awk -v kb="$rss_kb" -v r="$held" 'BEGIN { printf "%.1f", kb * 1024 / r }')
  log "  $rows rows ($held held): tessera ${steady} ratings/s (epoch 1 $first)," \
    "ceiling $ceiling, $bpr B/row"
  echo "{\"stage\":\"rows\",\"rows\":$held,\"rows_generated\":$rows,\"ratings\":$RATINGS," \
       "\"tessera_per_sec\":$steady,\"tessera_first_per_sec\":$first," \
       "\"ceiling_per_sec\":${ceiling:-0},\"bytes_per_row\":$bpr}" >> "$OUT/scaling.jsonl"
done

DATA=$BENCH_DIR/data
for sw in $PROCS; do
  servers=${sw%+*}
  workers=${sw#*+}
  tag="procs-$servers-$workers"
  rm -f "$OUT/scale-$tag.json"
  mpirun --allow-run-as-root --oversubscribe -np $((1 + servers + workers)) "$TESSERA" train \
    --train "$DATA/train.txt" --test "$DATA/test.txt" --epochs "$EPOCHS" "${MODEL_FLAGS[@]}" \
    --servers "$servers" --metrics-out "$OUT/scale-$tag.json" > "$OUT/scale-$tag.log" 2>&1
  read -r first steady < <(rates "$OUT/scale-$tag.json")
  log "  mpirun $servers servers + $workers workers: ${steady} ratings/s (epoch 1 $first)"
  echo "{\"stage\":\"procs\",\"servers\":$servers,\"workers\":$workers," \
       "\"tessera_per_sec\":$steady,\"tessera_first_per_sec\":$first}" >> "$OUT/scaling.jsonl"
done
