#!/usr/bin/env bash
# soak-campaign.sh - the soak test run long (issue 14, point 7): an MF and a DeepFM job of 2
# servers and 4 workers under mpirun train for longer while tessera_stranger floods their ports
# with garbage and forged messages (NULL and CURVE with a key that is not the job's); each must
# end with the quiet run's metrics, exit 0, and flat resident memory (soak_test.py states the
# bound). CI runs the MF soak for about a minute (ctest -R Soak).
#
#   bash scripts/soak-campaign.sh [MF_EPOCHS [DEEPFM_EPOCHS [RATE]]]  # defaults: 1500 60 1000
#   BUILD_DIR=/tmp/tb bash scripts/soak-campaign.sh                  # another build (default: build)
#
# 1500 MF epochs are about 80 000 steps (5 to 10 minutes under the flood on 2 cores). Prints what
# each soak measured (stranger counts, metrics, VmRSS growth per process), which
# docs/RELIABILITY.md records; full logs go to $BUILD_DIR/soak-campaign-*.log. Exit status 0 when
# every soak passed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=$(cd "$repo" && cd "${BUILD_DIR:-build}" && pwd)
mf_epochs=${1:-1500}
deepfm_epochs=${2:-60}
rate=${3:-1000}

echo "soak campaign: mf $mf_epochs epochs, deepfm $deepfm_epochs epochs, $rate messages/s," \
  "$(git -C "$repo" rev-parse --short HEAD)"
status=0
for run in "mf $mf_epochs" "deepfm $deepfm_epochs"; do
  set -- $run
  log="$build_dir/soak-campaign-$1.log"
  rc=0
  python3 "$repo/tests/integration/soak_test.py" --tessera "$build_dir/bin/tessera" \
    --stranger "$build_dir/tests/tools/tessera_stranger" --model "$1" --epochs "$2" \
    --rate "$rate" --limit 3000 >"$log" 2>&1 || rc=$?
  echo "== $1, $2 epochs: exit $rc (full log: $log)"
  grep -E '^(  (quiet run|stranger|metrics|mpirun|rank|largest)|PASS|FAIL)' "$log" | cut -c1-300
  [ "$rc" = 0 ] || status=1
done
exit "$status"
