#!/usr/bin/env python3
"""MF's blocked order (--order blocked, the default; worker/mf_model.h) against the plain shuffle.

On a set whose users and items each need more than one band (the start-up line names the bands):
  - with --deterministic the blocked order is bit-identical across reruns, 1, 2 and 3 servers,
    --transport zmq, and (--mpi) `mpirun -np 5 --servers 2`; a run resumed from a checkpoint taken
    inside an epoch, on another number of servers (3 in one process; --mpi: 1 under mpirun), ends
    bit-identical to the uninterrupted run;
  - it differs from --order shuffled (the blocks are in use) and lands within 2 % of its final
    test RMSE (the same model, another order).
On a set under one band (one block), blocked and shuffled are bit-identical.
"""

import os

import tessera_it as it

SEED = 5
EPOCHS = 3
STEP_FLAGS = ["--deterministic", "--seed", SEED, "--epochs", EPOCHS, "--batch-size", 512,
              "--lr", 0.05, "--l2", 0.02, "--l2-bias", 0.01]
BANDS = r"blocked order: ([0-9]+) user x ([0-9]+) item bands"


def run(ctx, data, name, extra, mpi_ranks=None):
    train_path, test_path = data
    records, res = ctx.train(name, ["--train", train_path, "--test", test_path] + STEP_FLAGS +
                             extra, mpi_ranks=mpi_ranks, timeout_s=180)
    return records, res


def test(ctx):
    # About 60k users in the training file: each worker's half holds over 32768 of them, two
    # user bands (the items, fewer, stay one band).
    train_path, test_path, _ = ctx.gen_ratings("data", users=70000, items=40000, ratings=150000,
                                               seed=3)
    data = (train_path, test_path)
    ckpt = ctx.path("ckpt")
    ref, res = run(ctx, data, "reference: 2 servers + 2 workers",
                   ["--servers", 2, "--workers", 2, "--checkpoint-dir", ckpt,
                    "--checkpoint-every", 50])
    bands = it.grep(BANDS, res.stderr)
    it.check(bands, f"no line naming the bands in the reference's log:\n{res.tail()}")
    print(f"  reference: {bands.group(0)}")
    step = os.path.join(ckpt, "step-50")
    it.check(os.path.isdir(step), f"no checkpoint {step}")

    if ctx.args.mpi:
        records, _ = run(ctx, data, "mpirun -np 5 --servers 2", ["--servers", 2], mpi_ranks=5)
        it.expect_same_series("mpirun -np 5 --servers 2", records, ref)
        records, _ = run(ctx, data, "resumed from step 50 under mpirun with 1 server",
                         ["--servers", 1, "--resume", step], mpi_ranks=4)
        it.expect_resumed_suffix("resumed from step 50 under mpirun with 1 server", records, ref)
        return

    for name, extra in {"again": ["--servers", 2, "--workers", 2],
                        "1 server": ["--servers", 1, "--workers", 2],
                        "3 servers": ["--servers", 3, "--workers", 2],
                        "--transport zmq": ["--servers", 2, "--workers", 2, "--transport", "zmq"],
                        "--order blocked given": ["--servers", 2, "--workers", 2, "--order",
                                                  "blocked"]}.items():
        records, _ = run(ctx, data, name, extra)
        it.expect_same_series(name, records, ref)
    records, _ = run(ctx, data, "resumed from step 50 on 3 servers",
                     ["--servers", 3, "--workers", 2, "--resume", step])
    it.expect_resumed_suffix("resumed from step 50 on 3 servers", records, ref)

    shuffled, res = run(ctx, data, "--order shuffled",
                        ["--servers", 2, "--workers", 2, "--order", "shuffled"])
    it.check(not it.grep(BANDS, res.stderr), "--order shuffled logged bands")
    it.check(it.model_series(shuffled) != it.model_series(ref),
             "--order shuffled is bit-identical to the blocked order: no blocks were used")
    it.expect_close_rmse("blocked", ref, "shuffled", shuffled, 0.02)

    # One band each: the blocked order is the plain shuffle, bit for bit.
    small_train, small_test, _ = ctx.gen_ratings("small", users=2000, items=500, ratings=30000,
                                                 seed=4)
    small = (small_train, small_test)
    blocked, res = run(ctx, small, "small, blocked", ["--servers", 1, "--workers", 2])
    it.check(not it.grep(BANDS, res.stderr), "one block logged bands")
    shuffled, _ = run(ctx, small, "small, shuffled",
                      ["--servers", 1, "--workers", 2, "--order", "shuffled"])
    it.expect_same_series("small set: shuffled against blocked", shuffled, blocked)


def add_args(p):
    p.add_argument("--mpi", action="store_true",
                   help="compare mpirun with the in-process reference, and resume under it")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
