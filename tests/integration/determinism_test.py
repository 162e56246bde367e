#!/usr/bin/env python3
"""With --deterministic, training is bit-identical whatever the layout of the job.

Reference: 2 servers + 2 workers in one process, --deterministic --seed 7 --epochs 3. Every
per-epoch loss and test rmse/mae (compared as the exact JSON text, timings ignored) must equal
the reference's for: a second identical run, 1 and 3 servers, --transport zmq (with and without
--shared-memory off), --server-threads 3 (default mode), or `mpirun -np 5 ... --servers 2` (--mpi
mode; also with steps of megabytes, through shared memory and with --shared-memory off).
Steps large enough for the two-thread splits (--dim 512 --batch-size 16384: the gradient and
the user table's update and copy run on two threads by default) must equal
--compute-threads 1 --threads-per-shard 1 bit for bit.
A different number of workers is a different SGD schedule: 1 server + 1 worker must only land
within 1% of the reference's final RMSE.
"""

import tessera_it as it

SEED = 7
DATA_SEED = 11
EPOCHS = 3
RUN_LIMIT_S = 120


def train(ctx, data, name, extra, mpi_ranks=None, expect_log=None):
    train_path, test_path = data
    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    metrics = ctx.path(f"metrics-{slug}.jsonl")
    args = ["train", "--train", train_path, "--test", test_path, "--deterministic",
            "--seed", SEED, "--epochs", EPOCHS, "--metrics-out", metrics] + extra
    if mpi_ranks:
        # Short peer timeouts: should mpirun be killed, orphaned ranks give up soon.
        res = ctx.mpirun(mpi_ranks, args + ["--timeout", "60", "--register-timeout", "60"],
                         RUN_LIMIT_S)
    else:
        res = ctx.tessera_run(args, RUN_LIMIT_S)
    it.expect_exit(res, 0, f"run '{name}'")
    if expect_log:
        it.check(it.grep(expect_log, res.stderr),
                 f"run '{name}': no line matching '{expect_log}' in its log:\n{res.tail()}")
    records = it.read_metrics(metrics)
    series = it.model_series(records)
    epochs_seen = sum(1 for r in records if r.get("event") == "eval")
    it.check(epochs_seen == EPOCHS,
             f"run '{name}': {epochs_seen} eval records in {metrics}, expected {EPOCHS}")
    return records, series


def expect_identical(name, series, ref_series):
    if series == ref_series:
        print(f"  '{name}' is bit-identical to the reference ({len(series)} numbers)")
        return
    for i, (got, want) in enumerate(zip(series, ref_series)):
        if got != want:
            raise it.TestFailure(f"run '{name}' differs from the reference at number {i}: "
                                 f"{got} != {want} (seed {SEED}, data seed {DATA_SEED})")
    raise it.TestFailure(f"run '{name}' has {len(series)} numbers, the reference "
                         f"{len(ref_series)} (seed {SEED}, data seed {DATA_SEED})")


def test(ctx):
    train_path, test_path, _ = ctx.gen_ratings("data", users=2000, items=500, ratings=60000,
                                               seed=DATA_SEED)
    data = (train_path, test_path)
    ref_records, ref = train(ctx, data, "2 servers + 2 workers", ["--servers", 2, "--workers", 2])
    if ctx.args.mpi:
        # Every rank is on this host: large frames go through shared memory unless turned off.
        # The large steps make frames of megabytes, so the shared path surely carries some.
        _, series = train(ctx, data, "mpirun -np 5 --servers 2", ["--servers", 2], mpi_ranks=5)
        expect_identical("mpirun -np 5 --servers 2", series, ref)
        large = ["--servers", 2, "--dim", 128, "--batch-size", 8192]
        _, large_ref = train(ctx, data, "large steps, in one process", large + ["--workers", 2])
        _, series = train(ctx, data, "large steps, mpirun, shared memory", large + ["--v", 1],
                          mpi_ranks=5, expect_log=r"shared-memory frames: sent [1-9]")
        expect_identical("large steps, mpirun, shared memory", series, large_ref)
        _, series = train(ctx, data, "large steps, mpirun, --shared-memory off",
                          large + ["--shared-memory", "off"], mpi_ranks=5)
        expect_identical("large steps, mpirun, --shared-memory off", series, large_ref)
        return

    variants = {
        "2 servers + 2 workers, again": ["--servers", 2, "--workers", 2],
        "1 server + 2 workers": ["--servers", 1, "--workers", 2],
        "3 servers + 2 workers": ["--servers", 3, "--workers", 2],
        "--transport zmq": ["--servers", 2, "--workers", 2, "--transport", "zmq"],
        "--transport zmq --shared-memory off": ["--servers", 2, "--workers", 2, "--transport",
                                                "zmq", "--shared-memory", "off"],
        "--server-threads 3": ["--servers", 2, "--workers", 2, "--server-threads", 3],
    }
    for name, extra in variants.items():
        _, series = train(ctx, data, name, extra)
        expect_identical(name, series, ref)

    large = ["--servers", 1, "--workers", 1, "--dim", 512, "--batch-size", 16384]
    _, one_thread = train(ctx, data, "large steps, 1 thread each",
                          large + ["--compute-threads", 1, "--threads-per-shard", 1])
    for name, extra in {"large steps, default threads": [],
                        "large steps, 2 compute threads only": ["--threads-per-shard", 1],
                        "large steps, 2 threads per shard only": ["--compute-threads", 1]}.items():
        _, series = train(ctx, data, name, large + extra)
        expect_identical(name, series, one_thread)

    one_records, _ = train(ctx, data, "1 server + 1 worker", ["--servers", 1, "--workers", 1])
    it.expect_close_rmse(f"1 worker (seed {SEED})", one_records, "2 workers", ref_records, 0.01)


def add_args(p):
    p.add_argument("--mpi", action="store_true",
                   help="compare `mpirun -np 5` with the in-process reference")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
