#!/usr/bin/env python3
"""MF's directly indexed arrays (issue 15's fast path: server tables and the worker's key
deduplication hold small integer ids in arrays indexed by the id) against the general path, every
id in the hash indexes (TESSERA_DIRECT_INDEX=0, launch/job.cc).

With --deterministic, on a planted set of integer ids:
  - the direct arrays are bit-identical to the general path with 2 servers and 2 workers in one
    process, and with 1 server;
  - a run of the general path checkpointed inside an epoch and resumed with the direct arrays on
    another number of servers (3) ends bit-identical to the uninterrupted run, and the other way
    round: a checkpoint holds rows, not the index they came from;
  - (--mpi) `mpirun -np 5 --servers 2` with the direct arrays is bit-identical to the general
    path in one process, and a resume under mpirun on 1 server too.
"""

import os

import tessera_it as it

GENERAL = "the general path"
STEP_FLAGS = ["--deterministic", "--seed", 7, "--epochs", 3, "--batch-size", 512, "--lr", 0.05,
              "--l2", 0.02, "--l2-bias", 0.01]


def general_path():
    return it.env_set("TESSERA_DIRECT_INDEX", "0")


def run(ctx, data, name, extra, mpi_ranks=None):
    train_path, test_path = data
    records, _ = ctx.train(name, ["--train", train_path, "--test", test_path] + STEP_FLAGS + extra,
                           mpi_ranks=mpi_ranks, timeout_s=180)
    return records


def test(ctx):
    it.check("TESSERA_DIRECT_INDEX" not in os.environ, "TESSERA_DIRECT_INDEX is set already")
    data = ctx.gen_ratings("data", users=6000, items=2000, ratings=60000, seed=9)[:2]
    general_ckpt, direct_ckpt = ctx.path("ckpt-general"), ctx.path("ckpt-direct")
    with general_path():
        general = run(ctx, data, "general path, 2 servers + 2 workers",
                      ["--servers", 2, "--workers", 2, "--checkpoint-dir", general_ckpt,
                       "--checkpoint-every", 40])
    it.check(general and it.model_series(general), "the general path wrote no metrics")

    if ctx.args.mpi:
        records = run(ctx, data, "mpirun -np 5 --servers 2", ["--servers", 2], mpi_ranks=5)
        it.expect_same_series("mpirun -np 5 --servers 2, direct arrays", records, general, GENERAL)
        records = run(ctx, data, "resumed under mpirun on 1 server",
                      ["--servers", 1, "--resume", os.path.join(general_ckpt, "step-40")],
                      mpi_ranks=4)
        it.expect_resumed_suffix("general path's step 40 resumed under mpirun on 1 server, direct",
                                 records, general)
        return

    direct = run(ctx, data, "direct arrays, 2 servers + 2 workers",
                 ["--servers", 2, "--workers", 2, "--checkpoint-dir", direct_ckpt,
                  "--checkpoint-every", 40])
    it.expect_same_series("direct arrays, 2 servers + 2 workers", direct, general, GENERAL)
    records = run(ctx, data, "direct arrays, 1 server", ["--servers", 1, "--workers", 2])
    it.expect_same_series("direct arrays, 1 server", records, general, GENERAL)
    records = run(ctx, data, "general step 40 resumed direct on 3 servers",
                  ["--servers", 3, "--workers", 2, "--resume",
                   os.path.join(general_ckpt, "step-40")])
    it.expect_resumed_suffix("general path's step 40 resumed with direct arrays on 3 servers",
                             records, general)
    with general_path():
        records = run(ctx, data, "direct step 40 resumed general on 1 server",
                      ["--servers", 1, "--workers", 2, "--resume",
                       os.path.join(direct_ckpt, "step-40")])
    it.expect_resumed_suffix("direct arrays' step 40 resumed on the general path on 1 server",
                             records, general)


def add_args(p):
    p.add_argument("--mpi", action="store_true",
                   help="compare mpirun with the in-process general path, and resume under it")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
