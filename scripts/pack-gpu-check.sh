#!/usr/bin/env bash
# pack-gpu-check.sh - build Tessera here and pack what scripts/gpu-check.sh needs on a GPU machine
# that is offline and may lack the Debian development packages.
#
#   bash scripts/pack-gpu-check.sh                      # build into /work/build-gpu-pack (Release,
#                                                       # nvcc), pack into shared/gpu-check
#   bash scripts/pack-gpu-check.sh --out DIR --build DIR [--emulated] [--no-build] [--limit-mib N]
#
# The pack (DIR/tessera-gpu-pack.tar.gz plus DIR/MANIFEST.txt) holds, stripped: bin/tessera,
# bin/tessera_bench, the test binaries of every ctest test labelled gpu, tests.tsv (one line per
# test to run: name, skip exit code, environment, command with @PACK@ / @MPIEXEC@ / @PYTHON3@ /
# @OUT@ placeholders; the gtest tests of one binary are run as one command), the scripts of gpu
# integration tests (src/), and lib/: every shared library those binaries load EXCEPT glibc's and
# the CUDA libraries (libcuda, libcudart, libcublas, libcublasLt, libnccl, libnvidia-*), which
# come from the GPU machine's CUDA install. It fails when DIR is over the limit (64 MiB), or when
# a packed binary would load a non-system library from outside the pack.
#
# --emulated builds with -DTESSERA_CUDA_EMULATION=ON (the emulated device; no CUDA libraries are
# then needed) for a dry run of gpu-check.sh here: `bash scripts/gpu-check.sh --pack DIR
# --emulated` with OUT set.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$repo/shared/gpu-check"
build=""
emulated=0
do_build=1
limit_mib=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --emulated) emulated=1; shift ;;
    --no-build) do_build=0; shift ;;
    --limit-mib) limit_mib=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "pack-gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$build" ]]; then
  build=/work/build-gpu-pack
  [[ $emulated == 1 ]] && build=/work/build-gpu-pack-emu
fi

if [[ $do_build == 1 ]]; then
  flags=(-DCMAKE_BUILD_TYPE=Release -DTESSERA_WERROR=ON)
  command -v ccache >/dev/null && flags+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache
                                          -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  if [[ $emulated == 1 ]]; then
    flags+=(-DTESSERA_CUDA_EMULATION=ON)
  else
    flags+=(-DTESSERA_CUDA_EMULATION=OFF)
  fi
  cmake -S "$repo" -B "$build" "${flags[@]}" >/dev/null
  # Everything: gtest_discover_tests lists a binary's tests only once it is built.
  cmake --build "$build" -j"${JOBS:-2}"
fi
[[ -x "$build/bin/tessera" ]] || { echo "pack-gpu-check: no $build/bin/tessera" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/src"

# The gpu tests: ctest's own description of each (command, environment, skip code).
ctest --test-dir "$build" -L gpu --show-only=json-v1 >"$stage/ctest.json"
python3 - "$stage/ctest.json" "$build" "$repo" "$stage" <<'EOF'
import json, os, shutil, sys
ctest, build, repo, stage = sys.argv[1:5]
build, repo = os.path.realpath(build), os.path.realpath(repo)
tests = json.load(open(ctest))["tests"]
binaries, lines, groups = set(), [], {}
def prop(t, name, default):
    for p in t.get("properties", []):
        if p["name"] == name:
            return p["value"]
    return default
def rewrite(arg, mpiexec):
    real = os.path.realpath(arg) if arg.startswith("/") else arg
    if arg == mpiexec or (arg.startswith("/") and
                          os.path.basename(arg) in ("mpiexec", "mpirun")):
        return "@MPIEXEC@"
    if os.path.basename(arg).startswith("python3") and arg.startswith("/"):
        return "@PYTHON3@"
    if real.startswith(build + "/") and not os.path.isdir(real):
        if not (os.path.isfile(real) and os.access(real, os.X_OK)):
            sys.exit("pack-gpu-check: a gpu test needs %s, which is not built" % real)
        binaries.add(real)
        return "@PACK@/bin/" + os.path.basename(real)
    if real.startswith(repo + "/") and os.path.isfile(real):
        rel = os.path.relpath(real, repo)
        os.makedirs(os.path.join(stage, "src", os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(real, os.path.join(stage, "src", rel))
        # a script's sibling modules (tessera_it.py) travel with it
        for sib in os.listdir(os.path.dirname(real)):
            if sib.endswith(".py"):
                shutil.copy2(os.path.join(os.path.dirname(real), sib),
                             os.path.join(stage, "src", os.path.dirname(rel), sib))
        return "@PACK@/src/" + rel
    return arg
for t in tests:
    cmd = t.get("command") or []
    if not cmd:
        continue
    mpiexec = cmd[0] if os.path.basename(cmd[0]) in ("mpiexec", "mpirun") else None
    env = [e for e in prop(t, "ENVIRONMENT", []) if not e.startswith("TESSERA_SHARED_DATA=")]
    skip = str(prop(t, "SKIP_RETURN_CODE", "-"))
    args = [rewrite(a, mpiexec) for a in cmd]
    # gtest_discover_tests: one test per ctest entry; run each binary once with every filter.
    if (len(args) >= 2 and args[0].startswith("@PACK@/bin/") and
            args[1].startswith("--gtest_filter=")):
        key = (args[0], tuple(args[2:]), skip, tuple(env))
        groups.setdefault(key, []).append(args[1][len("--gtest_filter="):])
        continue
    lines.append([t["name"], skip, ";".join(env) or "-"] + args)
for (binary, rest, skip, env), filters in sorted(groups.items()):
    name = os.path.basename(binary)
    lines.append([name, skip, ";".join(env) or "-", binary,
                  "--gtest_filter=" + ":".join(filters)] + list(rest))
for b in sorted(binaries):
    shutil.copy2(b, os.path.join(stage, "bin", os.path.basename(b)))
with open(os.path.join(stage, "tests.tsv"), "w") as f:
    for l in lines:
        f.write("\t".join(l) + "\n")
print("pack-gpu-check: %d gpu tests in %d commands, %d test binaries" %
      (len(tests), len(lines), len(binaries)))
EOF
cp "$build/bin/tessera" "$build/bin/tessera_bench" "$stage/bin/"
strip --strip-unneeded "$stage"/bin/*

# Libraries: everything the binaries load but glibc's core and the CUDA stack.
system_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libutil\.so)'
cuda_re='^(libcuda\.so|libcudart\.so|libcublas\.so|libcublasLt\.so|libnccl\.so|libnvidia|libnvrtc)'
for b in "$stage"/bin/*; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ "$name" =~ $system_re || "$name" =~ $cuda_re ]]; then continue; fi
  [[ -e "$stage/lib/$name" ]] || cp -L "$path" "$stage/lib/$name"
done
chmod u+w "$stage"/lib/* 2>/dev/null || true
strip --strip-unneeded "$stage"/lib/* 2>/dev/null || true

# The packed binaries must find every non-system, non-CUDA library in lib/.
cuda_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -d "$d" ]] && cuda_dirs="$cuda_dirs:$d"
done
bad=0
for b in "$stage"/bin/*; do
  while read -r name path; do
    if [[ "$name" =~ $system_re || "$name" =~ $cuda_re ]]; then continue; fi
    if [[ "$path" != "$stage/lib/"* ]]; then
      echo "pack-gpu-check: $(basename "$b") loads $name from $path, outside the pack" >&2
      bad=1
    fi
  done < <(LD_LIBRARY_PATH="$stage/lib$cuda_dirs" ldd "$b" | awk '$2 == "=>" {print $1, $3}')
done
[[ $bad == 0 ]] || exit 1
if ! env -i LD_LIBRARY_PATH="$stage/lib$cuda_dirs" "$stage/bin/tessera" train --help \
    >/dev/null; then
  echo "pack-gpu-check: the packed tessera does not run with only the packed libraries" >&2
  exit 1
fi

cudart=$(ldd "$stage/bin/tessera" | awk '$1 ~ /^libcudart/ {print $1}')
{
  echo "Tessera GPU check pack"
  echo "commit: $(git -C "$repo" rev-parse HEAD)$(git -C "$repo" diff --quiet || echo ' (dirty)')"
  echo "built: $(date -u +%FT%TZ) on $(uname -n), Release, emulated=$emulated"
  echo "needs on the GPU machine: glibc >= $(ldd --version | head -1 | awk '{print $NF}'), ${cudart:-no CUDA runtime (emulated)} and the cuBLAS of the same CUDA major version"
  echo "uncompressed: $(du -sb "$stage" | cut -f1) bytes"
  echo "files:"
  (cd "$stage" && find . -type f ! -name ctest.json | sort | sed 's/^/  /')
} >"$stage/MANIFEST.txt"
rm -f "$stage/ctest.json"

mkdir -p "$out"
rm -f "$out/tessera-gpu-pack.tar.gz" "$out/MANIFEST.txt"
tar -C "$stage" -czf "$out/tessera-gpu-pack.tar.gz" .
cp "$stage/MANIFEST.txt" "$out/MANIFEST.txt"
size=$(du -sb "$out" | cut -f1)
limit=$((limit_mib * 1024 * 1024))
echo "pack-gpu-check: $out: $size bytes ($(du -sh "$out" | cut -f1)), limit $limit_mib MiB"
if (( size > limit )); then
  echo "pack-gpu-check: $out is over $limit_mib MiB" >&2
  exit 1
fi
