#!/usr/bin/env bash
# fuzz-campaign.sh - fuzz every libFuzzer target of fuzz/, built by scripts/sanitize-check.sh
# (ASan + UBSan) into build-asan.
#
#   bash scripts/fuzz-campaign.sh --runs 200000   # CI: a fixed number of inputs per target
#   bash scripts/fuzz-campaign.sh --minutes 10    # a campaign: minutes per target
#   TARGETS="fuzz_npy fuzz_config" BUILD_DIR=build-asan JOBS=2 bash scripts/fuzz-campaign.sh ...
#
# Each target starts from its seed corpus (fuzz/corpus/<target>/, only read) plus a scratch
# corpus that collects the inputs it finds, under WORK_DIR (default: a temporary directory,
# removed at the end; set it to keep the grown corpora). JOBS targets run at once (default 2).
# --runs N stops a target after N inputs, with MAX_SECONDS (default 900) as a safety bound: a
# target that reaches the bound before N inputs fails the run. A finding (crash, sanitizer
# report, TS_FUZZ_CHECK, leak, an input running over 10 s or 2 GiB) fails the run: its log tail and
# the input that caused it (base64; kept as WORK_DIR/artifacts/<target>-*) are printed.
# At the end one line per target: inputs run, seconds, inputs/s, corpus size, in Markdown for
# docs/FUZZING.md.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build_dir=${BUILD_DIR:-build-asan}
jobs=${JOBS:-2}
runs=-1
seconds=0
case "${1:-}" in
  --runs) runs=$2 ;;
  --minutes) seconds=$(($2 * 60)) ;;
  *)
    echo "usage: $0 --runs N | --minutes M" >&2
    exit 2
    ;;
esac
if ((runs > 0)); then seconds=${MAX_SECONDS:-900}; fi
targets=(${TARGETS:-fuzz_message fuzz_ratings fuzz_ctr_text fuzz_ctr_cache fuzz_manifest
                   fuzz_row_file fuzz_npy fuzz_config})
for t in "${targets[@]}"; do
  if [[ ! -x "$build_dir/fuzz/$t" ]]; then
    echo "fuzz-campaign: $build_dir/fuzz/$t not built (bash scripts/sanitize-check.sh)" >&2
    exit 1
  fi
done
if [[ -n "${WORK_DIR:-}" ]]; then
  work=$WORK_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d /tmp/tessera-fuzz.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/artifacts"

export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:check_initialization_order=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$repo/scripts/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"

run_target() {
  local t=$1
  mkdir -p "$work/corpus/$t"
  "$build_dir/fuzz/$t" -runs="$runs" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=4096 -print_final_stats=1 -artifact_prefix="$work/artifacts/$t-" \
    "$work/corpus/$t" "fuzz/corpus/$t" >"$work/$t.log" 2>&1
}

failed=()
summarize() {
  local t=$1 rc=$2 took=$3
  local done_runs corpus
  done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
  corpus=$(ls "$work/corpus/$t" "fuzz/corpus/$t" | grep -cv -e '^$' -e ':$' || true)
  if ((rc != 0)); then
    echo "fuzz-campaign: $t: FINDING (exit $rc) after ${done_runs:-?} inputs; log tail:" >&2
    tail -40 "$work/$t.log" >&2
    for a in "$work/artifacts/$t-"*; do
      [[ -f "$a" ]] || continue
      echo "fuzz-campaign: input $a (base64):" >&2
      head -c 4096 "$a" | base64 >&2
    done
    failed+=("$t")
  elif ((runs > 0 && ${done_runs:-0} < runs)); then
    echo "fuzz-campaign: $t: only ${done_runs:-0} of $runs inputs within $seconds s" >&2
    failed+=("$t")
  fi
  printf '| %s | %s | %s | %s | %s |\n' "$t" "${done_runs:-?}" "$took" \
    "$(( ${done_runs:-0} / (took > 0 ? took : 1) ))" "$corpus" >>"$work/summary.md"
}

: >"$work/summary.md"
# Each target runs in a background subshell that leaves its exit status in WORK/<target>.rc.
declare -A start_of
running=()
reap() {
  local still=() r
  for r in "${running[@]}"; do
    if [[ -f "$work/$r.rc" ]]; then
      summarize "$r" "$(cat "$work/$r.rc")" $((SECONDS - start_of[$r]))
    else
      still+=("$r")
    fi
  done
  running=("${still[@]}")
}
for t in "${targets[@]}"; do
  while ((${#running[@]} >= jobs)); do
    wait -n || true
    reap
  done
  start_of[$t]=$SECONDS
  (run_target "$t" && rc=0 || rc=$?; echo "$rc" >"$work/$t.rc") &
  running+=("$t")
done
while ((${#running[@]} > 0)); do
  wait -n || true
  reap
done

echo "| target | inputs | seconds | inputs/s | corpus files |"
echo "| --- | --- | --- | --- | --- |"
cat "$work/summary.md"
if ((${#failed[@]} > 0)); then
  echo "fuzz-campaign: findings or short runs in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz-campaign: ${#targets[@]} targets, no finding"
