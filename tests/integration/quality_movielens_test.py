#!/usr/bin/env python3
"""With default flags, biased MF on MovieLens 100K u1.base reaches test RMSE <= 0.920 on u1.test.

Default mode: in one process. --workers 2: in one process with two workers. --mpi mode: under
`mpirun -np 3` (scheduler, 1 server, 1 worker).
Reads $TESSERA_SHARED_DATA/ml-100k and skips when it is absent (the data is never in the repo).
"""

import os

import tessera_it as it

THRESHOLD = 0.920


def test(ctx):
    ml = os.path.join(it.shared_data_dir(), "ml-100k")
    base, test_file = os.path.join(ml, "u1.base"), os.path.join(ml, "u1.test")
    if not (os.path.isfile(base) and os.path.isfile(test_file)):
        raise it.Skip(f"MovieLens 100K u1.base/u1.test not found in {ml}")
    metrics = ctx.path("metrics.jsonl")
    args = ["train", "--train", base, "--test", test_file, "--metrics-out", metrics]
    if ctx.args.mpi:
        res = ctx.mpirun(3, args + ["--timeout", 60, "--register-timeout", 60], 300)
        where = "mpirun -np 3"
    else:
        res = ctx.tessera_run(args + ["--workers", ctx.args.workers], 300)
        where = f"in one process, {ctx.args.workers} worker(s)"
    it.expect_exit(res, 0, f"tessera train ({where})")
    rmse = it.final_rmse(it.read_metrics(metrics))
    print(f"MovieLens 100K u1 ({where}): final test RMSE {rmse:.4f}, limit {THRESHOLD:.3f}")
    it.check(rmse <= THRESHOLD, f"final test RMSE {rmse:.4f} > {THRESHOLD:.3f} ({where})")


def add_args(p):
    p.add_argument("--mpi", action="store_true", help="run under mpirun -np 3")
    p.add_argument("--workers", type=int, default=1, help="workers in one process")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
