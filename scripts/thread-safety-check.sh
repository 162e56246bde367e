#!/usr/bin/env bash
# thread-safety-check.sh - Clang's thread-safety analysis as a CI pass: `clang++-14 -fsyntax-only
# -Wthread-safety -Werror` over every .cc file of core/, kernels/, scheduler/, server/, worker/
# and launch/, with the flags CMake gives GCC (from $BUILD_DIR/compile_commands.json). A member
# marked TS_GUARDED_BY touched without its Mutex, or a TS_REQUIRES function called without it,
# fails the pass (core/mutex.h, core/thread_annotations.h).
#
#   bash scripts/build.sh && bash scripts/thread-safety-check.sh
#   BUILD_DIR=/tmp/tb JOBS=2 bash scripts/thread-safety-check.sh
#   bash scripts/thread-safety-check.sh --self-test   # only the proof below (a ctest test too)
#
# First it proves that the pass catches lock mistakes: each case of
# tests/core/thread_safety_negative.cc must be rejected with a -Wthread-safety error, and the
# file without a case must compile. -fsyntax-only: nothing is compiled to code or linked, so the
# pass costs a fraction of a build. Needs clang++-14 (scripts/install-deps.sh) and python3.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-2}
clang=${CLANGXX:-clang++-14}
# The analysis, as errors. Not -Wthread-safety-beta (also clean): its extra checks (lock order
# declared with acquired_before/after, pointees of TS_PT_GUARDED_BY arrays) have nothing to check
# here, as core/thread_annotations.h offers neither, and beta checks change between releases.
ts_flags=(-fsyntax-only -Wthread-safety -Werror)

if ! command -v "$clang" >/dev/null; then
  echo "thread-safety-check: $clang not found (bash scripts/install-deps.sh installs clang-14)" >&2
  # 77: ctest's test of the proof reports itself skipped, not passed; the CI pass fails.
  if [[ "${1:-}" == --self-test ]]; then exit 77; fi
  exit 1
fi

# ---- the proof: the pass rejects each deliberate mistake ----
negative=tests/core/thread_safety_negative.cc
cases=$(grep -c '^#\(el\)\?if TS_NEGATIVE_CASE == ' "$negative")
if ! "$clang" -std=c++17 -I"$repo" "${ts_flags[@]}" "$negative"; then
  echo "thread-safety-check: $negative does not compile without a mistake" >&2
  exit 1
fi
for ((c = 1; c <= cases; ++c)); do
  if out=$("$clang" -std=c++17 -I"$repo" "${ts_flags[@]}" -DTS_NEGATIVE_CASE=$c "$negative" 2>&1); then
    echo "thread-safety-check: case $c of $negative compiled: the pass misses that mistake" >&2
    exit 1
  fi
  if ! grep -q -- '-Wthread-safety' <<<"$out"; then
    echo "thread-safety-check: case $c of $negative failed, but not with a thread-safety error:" >&2
    echo "$out" >&2
    exit 1
  fi
done
echo "thread-safety-check: all $cases deliberate lock mistakes rejected"
if [[ "${1:-}" == --self-test ]]; then exit 0; fi

# ---- the pass over the tree ----
db="$build_dir/compile_commands.json"
if [[ ! -f "$db" ]]; then
  echo "thread-safety-check: $db not found; run scripts/build.sh first" >&2
  exit 1
fi
python3 - "$repo" "$db" "$clang" "$jobs" "${ts_flags[@]}" <<'EOF'
import concurrent.futures, json, os, shlex, subprocess, sys, time

repo, db, clang, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ts_flags = sys.argv[5:]
dirs = ("core", "kernels", "scheduler", "server", "worker", "launch")
# GCC options clang++ does not take (none of them matters to the analysis).
gcc_only = {"-fno-semantic-interposition", "-fconcepts", "-fno-gnu-unique", "-fstack-clash-protection"}

def clang_command(entry):
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    src = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    out, skip = [clang], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a == "-c" or os.path.realpath(os.path.join(entry["directory"], a)) == src:
            pass
        # GCC's warning set (-Wall -Wextra -Werror) is the build's business, not this pass's.
        elif a.startswith("-W") or a in gcc_only or a.startswith("-flto"):
            pass
        else:
            out.append(a)
    return out + ts_flags + [src], src

commands = {}
for entry in json.load(open(db)):
    cmd, src = clang_command(entry)
    rel = os.path.relpath(src, repo)
    if rel.endswith(".cc") and rel.split("/")[0] in dirs:
        commands[rel] = (cmd, entry["directory"])
if not commands:
    sys.exit(f"thread-safety-check: no source of {', '.join(dirs)} in {db}")

def check(rel):
    cmd, cwd = commands[rel]
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return rel, r.returncode, r.stdout

start = time.monotonic()
failed = []
with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    for rel, rc, output in pool.map(check, sorted(commands)):
        if rc != 0:
            failed.append(rel)
            sys.stderr.write(output)
seconds = time.monotonic() - start
if failed:
    sys.exit(f"thread-safety-check: {len(failed)} of {len(commands)} files fail: {' '.join(failed)}")
print(f"thread-safety-check: {len(commands)} files clean ({seconds:.0f} s, {jobs} jobs)")
EOF
