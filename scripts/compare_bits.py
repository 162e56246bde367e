#!/usr/bin/env python3
"""Two tessera binaries, one answer: every deterministic run gives the same bits.

Runs the same deterministic jobs with an OLD and a NEW binary and compares what they wrote:
every model-dependent number of their --metrics-out files (as exact text, timings ignored), the
files `tessera gen` writes, binary caches, exports and recommendations (byte for byte). Then it
crosses the versions: the NEW binary resumes a checkpoint the OLD one wrote (on another number
of servers), trains on the OLD binary's cache and exports the OLD checkpoint, and each must
match what the OLD binary does with its own files.

  scripts/compare_bits.py --old OLD/bin/tessera --new NEW/bin/tessera [--mpi] [--keep]

scripts/compare-bits.sh builds a given commit and calls this. Exit 0 when every comparison
holds; 1 with the first difference otherwise. Prints one line per comparison.
"""

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import tessera_it as it  # noqa: E402  (the integration tests' runner and metrics reader)

RUN_LIMIT_S = 300
MF_DATA = ["--users", 2000, "--items", 500, "--ratings", 60000, "--rank", 8, "--noise", 0.5,
           "--seed", 11]
CTR_DATA = ["--rows", 20000, "--seed", 5]
CTR_SMALL = ["--emb-dim", 8, "--mlp", "32,16", "--batch-size", 512, "--epochs", 2]

# (name, arguments after `train`, data set, mpirun ranks or None)
RUNS = [
    ("mf 2s+2w", ["--servers", 2, "--workers", 2, "--epochs", 3], "mf", None),
    ("mf 1s+1w dim 128 two-thread splits", ["--dim", 128, "--batch-size", 8192, "--epochs", 2],
     "mf", None),
    ("mf 3s+2w zmq", ["--servers", 3, "--workers", 2, "--epochs", 2, "--transport", "zmq"],
     "mf", None),
    ("deepfm 2s+2w", ["--model", "deepfm", "--servers", 2, "--workers", 2] + CTR_SMALL, "ctr",
     None),
    ("dcn_v2 2s+2w", ["--model", "dcn_v2", "--servers", 2, "--workers", 2] + CTR_SMALL, "ctr",
     None),
    ("wide_deep 1s+2w", ["--model", "wide_deep", "--servers", 1, "--workers", 2] + CTR_SMALL,
     "ctr", None),
    ("fm 1s+1w", ["--model", "fm", "--eval-every", 10] + CTR_SMALL, "ctr", None),
    ("lr 2s+1w ftrl", ["--model", "lr", "--servers", 2] + CTR_SMALL, "ctr", None),
]
MPI_RUNS = [
    ("mf mpirun -np 5", ["--servers", 2, "--epochs", 3], "mf", 5),
    ("deepfm mpirun -np 5", ["--model", "deepfm", "--servers", 2] + CTR_SMALL, "ctr", 5),
    ("dcn_v2 mpirun -np 4", ["--model", "dcn_v2", "--servers", 1] + CTR_SMALL, "ctr", 4),
]


class Side:
    """One binary and its scratch directory."""

    def __init__(self, name, binary, root):
        self.name = name
        self.ctx = it.Context(argparse.Namespace(tessera=binary, mpiexec=""))
        self.ctx.tmp = os.path.join(root, name)
        os.makedirs(self.ctx.tmp)

    def path(self, *parts):
        return self.ctx.path(*parts)

    def run(self, args, mpi_ranks=None, what=""):
        args = [str(a) for a in args]
        if mpi_ranks:
            res = self.ctx.mpirun(mpi_ranks, args + ["--timeout", "60", "--register-timeout", "60"],
                                  RUN_LIMIT_S)
        else:
            res = self.ctx.tessera_run(args, RUN_LIMIT_S)
        it.expect_exit(res, 0, f"{self.name}: {what or ' '.join(args[:2])}")
        return res


def slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def same_files(what, a, b):
    """a and b (files or directory trees) hold the same bytes."""
    if os.path.isdir(a):
        cmp = filecmp.dircmp(a, b)
        it.check(not cmp.left_only and not cmp.right_only,
                 f"{what}: {a} and {b} hold different files: {cmp.left_only} {cmp.right_only}")
        for f in sorted(cmp.common_files):
            same_files(f"{what}/{f}", os.path.join(a, f), os.path.join(b, f))
        for d in sorted(cmp.common_dirs):
            same_files(f"{what}/{d}", os.path.join(a, d), os.path.join(b, d))
        return
    it.check(filecmp.cmp(a, b, shallow=False), f"{what}: {a} and {b} differ")


def same_series(what, a, b):
    sa, sb = it.model_series(it.read_metrics(a)), it.model_series(it.read_metrics(b))
    it.check(sa, f"{what}: no model numbers in {a}")
    if sa != sb:
        for i, (x, y) in enumerate(zip(sa, sb)):
            it.check(x == y, f"{what}: number {i} differs: old {x}, new {y}")
        it.check(False, f"{what}: old has {len(sa)} numbers, new {len(sb)}")
    print(f"  same bits: {what} ({len(sa)} numbers)")


def compare(old, new, use_mpi):
    sides = (old, new)
    for s in sides:
        s.run(["gen", "ratings"] + MF_DATA + ["--out", s.path("mf")], what="gen ratings")
        s.run(["gen", "criteo"] + CTR_DATA + ["--out", s.path("ctr")], what="gen criteo")
    same_files("gen ratings", old.path("mf"), new.path("mf"))
    same_files("gen criteo", old.path("ctr"), new.path("ctr"))
    print("  same bytes: tessera gen ratings, tessera gen criteo")

    def data_args(side, data):
        if data == "mf":
            return ["--train", side.path("mf", "train.txt"), "--test", side.path("mf", "test.txt")]
        return ["--train", side.path("ctr", "train.tsv"), "--test", side.path("ctr", "test.tsv")]

    for name, args, data, ranks in RUNS + (MPI_RUNS if use_mpi else []):
        for s in sides:
            s.run(["train"] + data_args(s, data) + ["--deterministic", "--seed", 7] + args +
                  ["--metrics-out", s.path(slug(name) + ".jsonl")], ranks, name)
        same_series(name, old.path(slug(name) + ".jsonl"), new.path(slug(name) + ".jsonl"))

    # Checkpoints: 2 servers write epoch 1 of 3; each side resumes its own on 3 servers, and the
    # new binary resumes the old one's. All three must end with the same numbers.
    for model, data, extra in (("mf", "mf", ["--epochs", 3]),
                               ("deepfm", "ctr", CTR_SMALL[:-2] + ["--epochs", 3])):
        for s in sides:
            ck = s.path(f"ck-{model}")
            s.run(["train", "--model", model] + data_args(old, data) +
                  ["--deterministic", "--seed", 7, "--servers", 2, "--workers", 2] + extra[:-1] +
                  ["1", "--checkpoint-dir", ck], what=f"{model} first epoch")
        for s, ck_side, tag in ((old, old, "old-old"), (new, new, "new-new"),
                                (new, old, "new-old")):
            dst = s.path(f"ck-{model}-{tag}")
            shutil.copytree(ck_side.path(f"ck-{model}"), dst, symlinks=True)
            s.run(["train", "--model", model] + data_args(old, data) +
                  ["--deterministic", "--seed", 7, "--servers", 3, "--workers", 2] + extra +
                  ["--resume", dst, "--metrics-out", s.path(f"resume-{model}-{tag}.jsonl")],
                  what=f"{model} resume {tag}")
        same_series(f"{model} resumed on 3 servers",
                    old.path(f"resume-{model}-old-old.jsonl"),
                    new.path(f"resume-{model}-new-new.jsonl"))
        same_series(f"{model} checkpoint of the old binary resumed by the new one",
                    old.path(f"resume-{model}-old-old.jsonl"),
                    new.path(f"resume-{model}-new-old.jsonl"))

    # Exports of the old binary's MF checkpoint, and recommendations from them.
    for s in sides:
        for fmt in ("npy", "text"):
            s.run(["export", "--checkpoint", old.path("ck-mf"), "--out",
                   s.path(f"export-{fmt}"), "--format", fmt], what=f"export {fmt}")
        with open(s.path("users.txt"), "w", encoding="utf-8") as f:
            f.write("1\n2\n3\n")
        res = s.run(["recommend", "--export", s.path("export-npy"), "--users", s.path("users.txt"),
                     "--k", 5], what="recommend")
        with open(s.path("recommend.txt"), "w", encoding="utf-8") as f:
            f.write(res.stdout)
    for fmt in ("npy", "text"):
        same_files(f"export --format {fmt} of the old checkpoint", old.path(f"export-{fmt}"),
                   new.path(f"export-{fmt}"))
    same_files("recommend", old.path("recommend.txt"), new.path("recommend.txt"))
    print("  same bytes: export (npy, text) of the old checkpoint, recommend")

    # Binary caches: the same bytes, and the new binary trains on the old one's cache.
    for s in sides:
        s.run(["convert", "--input", old.path("ctr", "train.tsv"), "--output",
               s.path("train.cache")], what="convert")
    same_files("convert (binary cache)", old.path("train.cache"), new.path("train.cache"))
    for s, cache_side in ((old, old), (new, old)):
        s.run(["train", "--model", "deepfm", "--train", cache_side.path("train.cache"), "--test",
               old.path("ctr", "test.tsv"), "--deterministic", "--seed", 7] + CTR_SMALL +
              ["--metrics-out", s.path("cache.jsonl")], what="train on a cache")
    same_series("deepfm on the old binary's cache", old.path("cache.jsonl"),
                new.path("cache.jsonl"))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, help="the tessera binary before the change")
    p.add_argument("--new", required=True, help="the tessera binary after the change")
    p.add_argument("--mpi", action="store_true", help="also compare runs under mpirun")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="tessera-bits-")
    try:
        compare(Side("old", os.path.abspath(args.old), root),
                Side("new", os.path.abspath(args.new), root), args.mpi)
    except it.TestFailure as e:
        print(f"DIFFERENT: {e}")
        return 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("SAME: every comparison holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
