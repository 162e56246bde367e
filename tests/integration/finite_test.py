#!/usr/bin/env python3
"""A non-finite model stops the job with exit status 3; bad values, files and limits exit 2.

--mode diverge (default): `--lr 1e10` ends the job with exit 3 and one `tessera: error:` line
naming the step, the table and the key; the newest checkpoint is a good one (it exports, and
every exported value is finite); `--init-std 1e19` is stopped by the worker's gradient check. With --mpi the same job runs under mpirun; with --device cuda
it runs on the CUDA device (skips where none is usable; the emulated build has one).
--mode inputs: a rating of 3e38 and a NaN in a libsvm / Criteo file are refused with file and
line (exit 2); `recommend` on an export holding a NaN exits 3; a CR-only rating file trains on
every rating; an empty --test file, --config on a FIFO or a directory, a thread that cannot be
started (--workers 1000 under `ulimit -v`) and `export --checkpoint` of a missing directory each
exit 2 with one clear line.
"""

import glob
import math
import os
import re
import struct

import tessera_it as it

RUN_LIMIT_S = 120


def error_lines(res):
    return [l for l in res.stderr.splitlines() if l.startswith("tessera: error:")]


def expect_error(res, status, what, *needles):
    """Exit `status` and a `tessera: error:` line containing every needle; returns that line."""
    it.expect_exit(res, status, what)
    errors = error_lines(res)
    it.check(errors, f"{what}: no 'tessera: error:' line on stderr\n{res.tail()}")
    for needle in needles:
        it.check(any(needle in l for l in errors),
                 f"{what}: the error does not mention {needle!r}: {errors}")
    print(f"  {what}: exit {status}, {errors[0]}")
    return errors[0]


def write(path, data):
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def read_npy_floats(path):
    """The float32 values of a .npy file written by `tessera export` (no numpy needed)."""
    with open(path, "rb") as f:
        data = f.read()
    it.check(data[:6] == b"\x93NUMPY", f"{path} is not an npy file")
    header_len = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + header_len].decode("latin-1")
    it.check("'<f4'" in header, f"{path}: not float32 ({header})")
    body = data[10 + header_len:]
    return struct.unpack(f"<{len(body) // 4}f", body), 10 + header_len


# --- diverge --------------------------------------------------------------------------------

NON_FINITE = re.compile(r"non-finite model at step (\d+): (table \d+, key \d+|the training loss)")


def test_diverge(ctx):
    train, test, _ = ctx.gen_ratings("data", users=300, items=200, ratings=6000, seed=3)
    ckpt = ctx.path("ckpt")
    # Batch 64 and l2-bias 0.01 (not the small-data defaults): the weights themselves overflow in
    # step 2, so the servers' per-step check stops the job (with other flags the Adagrad state
    # may overflow first, which the checkpoint writer catches instead).
    args = ["train", "--train", train, "--test", test, "--epochs", 2, "--lr", "1e10",
            "--l2-bias", 0.01, "--checkpoint-dir", ckpt, "--checkpoint-every", 1]
    device = ctx.args.device
    if device == "cuda":
        args += ["--device", "cuda", "--batch-size", 256]
    else:
        args += ["--batch-size", 64]
    if ctx.args.mpi:
        res = ctx.mpirun(3, args + ["--timeout", 60, "--register-timeout", 60], RUN_LIMIT_S)
    else:
        res = ctx.tessera_run(args, RUN_LIMIT_S)
    if device == "cuda" and res.returncode == 2 and "cuda" in res.stderr.lower():
        raise it.Skip("no usable CUDA device: " + res.stderr.strip().splitlines()[-1])
    line = expect_error(res, 3, f"--lr 1e10 ({'mpirun' if ctx.args.mpi else 'one process'}, "
                                f"{device})", "non-finite model at step ")
    match = NON_FINITE.search(line)
    it.check(match, f"the error does not name the step and the table and key: {line}")
    step = int(match.group(1))
    if not ctx.args.mpi:
        it.check(len(error_lines(res)) == 1,
                 f"expected one 'tessera: error:' line, got {error_lines(res)}")
    it.check("nan" not in res.stdout, f"nan printed on stdout:\n{res.tail()}")

    # The newest checkpoint holds the last finite model: a step before the failing one, and it
    # exports with every value finite.
    steps = sorted(int(os.path.basename(d)[5:]) for d in glob.glob(os.path.join(ckpt, "step-*"))
                   if not d.endswith(".tmp"))
    it.check(steps, f"no checkpoint was written before step {step}\n{res.tail()}")
    it.check(steps[-1] < step, f"checkpoint step-{steps[-1]} is not before the failing step {step}")
    it.check(f"step-{steps[-1]}" in line, f"the error does not name the newest checkpoint: {line}")
    out = ctx.path("export")
    res = ctx.tessera_run(["export", "--checkpoint", os.path.join(ckpt, f"step-{steps[-1]}"),
                           "--out", out], RUN_LIMIT_S)
    it.expect_exit(res, 0, f"export of step-{steps[-1]}")
    for name in ("user", "item"):
        for part in ("embeddings", "bias"):
            values, _ = read_npy_floats(os.path.join(out, name, f"{part}.npy"))
            it.check(all(math.isfinite(v) for v in values), f"{name}/{part}.npy is not finite")
    print(f"  newest checkpoint step-{steps[-1]} (failing step {step}) exports, every value finite")

    # Rows so large that the first prediction overflows: the worker's own check (on CUDA, of the
    # downloaded gradients) stops the job before anything is pushed.
    args = ["train", "--train", train, "--epochs", 1, "--init-std", "1e19"]
    if device == "cuda":
        args += ["--device", "cuda", "--batch-size", 256]
    res = ctx.mpirun(3, args + ["--timeout", 60, "--register-timeout", 60], RUN_LIMIT_S) \
        if ctx.args.mpi else ctx.tessera_run(args, RUN_LIMIT_S)
    expect_error(res, 3, f"--init-std 1e19 ({device})", "non-finite model at step 1: table ",
                 "the gradient is ")


# --- inputs ---------------------------------------------------------------------------------

def test_inputs(ctx):
    train, test, _ = ctx.gen_ratings("data", users=200, items=100, ratings=2000, seed=5)
    run = ctx.tessera_run
    with open(train, encoding="utf-8") as f:
        lines = f.read().splitlines()

    # One rating of 3e38: a finite float whose squared error is not.
    big = lines[:]
    big[6] = big[6].rsplit(maxsplit=1)[0] + " 3e38"
    path = write(ctx.path("big.txt"), "\n".join(big) + "\n")
    res = run(["train", "--train", path, "--epochs", 1], RUN_LIMIT_S)
    expect_error(res, 2, "a rating of 3e38", f"{path}:7:", "rating out of range")

    # A NaN in CTR text files.
    svm = write(ctx.path("nan.libsvm"), "1 1:1 2:1\n0 1:1 2:nan\n1 1:1 2:1\n")
    res = run(["train", "--model", "lr", "--train", svm, "--epochs", 1], RUN_LIMIT_S)
    expect_error(res, 2, "a NaN feature value in libsvm", f"{svm}:2:", "not finite")
    criteo_train, _, _ = ctx.gen_criteo("criteo", rows=200, seed=2)
    with open(criteo_train, encoding="utf-8") as f:
        rows = f.read().splitlines()
    rows[2] = "nan" + rows[2][1:]
    tsv = write(ctx.path("nan.tsv"), "\n".join(rows) + "\n")
    res = run(["train", "--model", "lr", "--train", tsv, "--epochs", 1], RUN_LIMIT_S)
    expect_error(res, 2, "a NaN label in Criteo TSV", f"{tsv}:3:", "label")

    # recommend on an export holding a NaN.
    ckpt, out = ctx.path("ckpt"), ctx.path("export")
    res = run(["train", "--train", train, "--epochs", 1, "--checkpoint-dir", ckpt], RUN_LIMIT_S)
    it.expect_exit(res, 0, "a finite run")
    res = run(["export", "--checkpoint", ckpt, "--out", out], RUN_LIMIT_S)
    it.expect_exit(res, 0, "its export")
    emb = os.path.join(out, "item", "embeddings.npy")
    _, offset = read_npy_floats(emb)
    with open(emb, "r+b") as f:
        f.seek(offset + 4 * 5)
        f.write(struct.pack("<f", float("nan")))
    user = lines[0].split()[0]
    res = run(["recommend", "--export", out, "--user", user], RUN_LIMIT_S)
    expect_error(res, 3, "recommend from an export with a NaN", "non-finite model",
                 "item/embeddings.npy")
    it.check("nan" not in res.stdout, f"recommend printed nan:\n{res.stdout}")

    # CR-only line ends: every rating is read.
    cr = write(ctx.path("cr.txt"), "\r".join(lines) + "\r")
    res = run(["train", "--train", cr, "--epochs", 1], RUN_LIMIT_S)
    it.expect_exit(res, 0, "a CR-only rating file")
    it.check(f"on {len(lines)} ratings" in res.stderr,
             f"the CR-only file did not train on its {len(lines)} ratings\n{res.tail(60)}")
    print(f"  CR-only line ends: trained on all {len(lines)} ratings")

    # An empty test file.
    empty = write(ctx.path("empty_test.txt"), "")
    res = run(["train", "--train", train, "--test", empty, "--epochs", 1], RUN_LIMIT_S)
    expect_error(res, 2, "an empty --test file", f"--test {empty}", "no ratings")

    # --config on a FIFO (opening it would block) and on a directory (it would read as empty).
    fifo = ctx.path("config.fifo")
    os.mkfifo(fifo)
    res = run(["train", "--train", train, "--config", fifo], 30)
    expect_error(res, 2, "--config on a FIFO", f"--config {fifo} is not a regular file")
    res = run(["train", "--train", train, "--config", ctx.path("data")], 30)
    expect_error(res, 2, "--config on a directory", "is a directory")

    # A thread that cannot be started.
    res = it.run(["bash", "-c", 'ulimit -v 3000000 && exec "$@"', "bash", ctx.tessera, "train",
                  "--train", train, "--epochs", 1, "--workers", 1000], RUN_LIMIT_S, env=ctx.env())
    expect_error(res, 2, "--workers 1000 under ulimit -v", "cannot start a thread")
    it.check(len(error_lines(res)) == 1, f"expected one error line, got {error_lines(res)}")

    # export --checkpoint of a missing directory names --checkpoint.
    missing = ctx.path("nonexist")
    res = run(["export", "--checkpoint", missing, "--out", ctx.path("x")], RUN_LIMIT_S)
    expect_error(res, 2, "export --checkpoint of a missing directory", f"--checkpoint {missing}")
    it.check("--resume" not in res.stderr, f"the error blames --resume:\n{res.tail()}")


def test(ctx):
    if ctx.args.mode == "inputs":
        test_inputs(ctx)
    else:
        test_diverge(ctx)


def add_args(p):
    p.add_argument("--mode", choices=["diverge", "inputs"], default="diverge")
    p.add_argument("--mpi", action="store_true", help="diverge under mpirun")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="diverge's device")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
