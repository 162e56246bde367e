#!/usr/bin/env python3
"""The pull ahead (issue 15's overlap: in a job of one worker, the pull of a step that reads none
of the step before's rows goes before that step's push; worker/train_loop.h) against the general
path, every pull after the push before it (TESSERA_PULL_AHEAD=0, launch/job.cc).

With --deterministic, on a set of more than one block of the blocked order:
  - the worker logs how many steps pulled ahead (most of them), and the general path none;
  - the pull ahead is bit-identical to the general path with 1 and 3 servers (2 shard threads
    each), and over --transport zmq;
  - a run of the general path checkpointed inside an epoch and resumed with the pull ahead on
    another number of servers (2) ends bit-identical to the uninterrupted run, and the other way
    round;
  - (--mpi) `mpirun -np 3` (one worker) pulls ahead and is bit-identical to the general path in
    one process, and a resume under mpirun on 2 servers too;
  - a run pulling ahead stopped by SIGTERM (two pulls in flight) and resumed.
"""

import os
import signal

import recovery_test
import tessera_it as it

GENERAL = "the general path"
STEP_FLAGS = ["--deterministic", "--seed", 5, "--epochs", 2, "--batch-size", 512, "--lr", 0.05,
              "--l2", 0.02, "--l2-bias", 0.01]
AHEAD = r"pulled ahead ([0-9]+) of ([0-9]+) steps"


def general_path():
    return it.env_set("TESSERA_PULL_AHEAD", "0")


def run(ctx, data, name, extra, mpi_ranks=None):
    train_path, test_path = data
    return ctx.train(name, ["--train", train_path, "--test", test_path] + STEP_FLAGS + extra,
                     mpi_ranks=mpi_ranks, timeout_s=180)


def expect_pulled_ahead(name, res):
    m = it.grep(AHEAD, res.stderr)
    it.check(m, f"{name}: no line saying how many steps pulled ahead:\n{res.tail()}")
    ahead, steps = int(m.group(1)), int(m.group(2))
    it.check(ahead > steps // 2, f"{name}: only {ahead} of {steps} steps pulled ahead")
    print(f"  {name}: {m.group(0)}")


def stop_pulling_ahead(ctx, data, ckpt):
    """Runs the pull ahead with a checkpoint every 50 steps in ckpt and sends SIGTERM once the
    first is written: the loop stops at a step's boundary with the next two steps' pulls in
    flight (it sends the step after next's with this step's push), writes a checkpoint and exits
    143. Returns the checkpoint's step."""
    train_path, test_path = data
    cmd = [ctx.tessera, "train", "--train", train_path, "--test", test_path] + STEP_FLAGS + \
        ["--servers", 1, "--checkpoint-dir", ckpt, "--checkpoint-every", 50]
    with recovery_test.Job(ctx, cmd, "stopped-ahead") as job:
        recovery_test.wait_for("step-50", lambda: os.path.isdir(os.path.join(ckpt, "step-50")),
                               job, 120)
        job.proc.send_signal(signal.SIGTERM)
        status = job.wait(120)
        text = job.text()
    it.check(status == 143 and "stopped by a signal after checkpoint" in text,
             f"SIGTERM while pulling ahead: exit {status}\n{text[-3000:]}")
    step = recovery_test.latest_step(ckpt)
    it.check(step > 50, f"SIGTERM while pulling ahead: latest checkpoint {step}\n{text[-3000:]}")
    return step


def test(ctx):
    it.check("TESSERA_PULL_AHEAD" not in os.environ, "TESSERA_PULL_AHEAD is set already")
    # About 60k users and 60k items in the training file: two item bands and (blocks of about 12
    # steps) 11 user bands, blocks that pair up.
    data = ctx.gen_ratings("data", users=70000, items=80000, ratings=150000, seed=3)[:2]
    general_ckpt, ahead_ckpt = ctx.path("ckpt-general"), ctx.path("ckpt-ahead")
    with general_path():
        general, res = run(ctx, data, "general path, 1 server",
                           ["--servers", 1, "--checkpoint-dir", general_ckpt,
                            "--checkpoint-every", 50])
    it.check(general and it.model_series(general), "the general path wrote no metrics")
    it.check(not it.grep(AHEAD, res.stderr), "TESSERA_PULL_AHEAD=0 still pulled ahead")

    if ctx.args.mpi:
        records, res = run(ctx, data, "mpirun -np 3", ["--servers", 1], mpi_ranks=3)
        expect_pulled_ahead("mpirun -np 3", res)
        it.expect_same_series("mpirun -np 3, pulling ahead", records, general, GENERAL)
        records, _ = run(ctx, data, "resumed under mpirun on 2 servers",
                         ["--servers", 2, "--resume", os.path.join(general_ckpt, "step-50")],
                         mpi_ranks=4)
        it.expect_resumed_suffix("general path's step 50 resumed under mpirun on 2 servers",
                                 records, general)
        return

    ahead, res = run(ctx, data, "pull ahead, 1 server",
                     ["--servers", 1, "--checkpoint-dir", ahead_ckpt, "--checkpoint-every", 50])
    expect_pulled_ahead("pull ahead, 1 server", res)
    it.expect_same_series("pull ahead, 1 server", ahead, general, GENERAL)
    for name, extra in {"3 servers, 2 shard threads": ["--servers", 3, "--server-threads", 2],
                        "--transport zmq": ["--servers", 1, "--transport", "zmq"]}.items():
        records, _ = run(ctx, data, name, extra)
        it.expect_same_series(f"pull ahead, {name}", records, general, GENERAL)
    records, _ = run(ctx, data, "general step 50 resumed pulling ahead on 2 servers",
                     ["--servers", 2, "--resume", os.path.join(general_ckpt, "step-50")])
    it.expect_resumed_suffix("general path's step 50 resumed pulling ahead on 2 servers",
                             records, general)
    with general_path():
        records, _ = run(ctx, data, "pull ahead's step 50 resumed on the general path",
                         ["--servers", 1, "--resume", os.path.join(ahead_ckpt, "step-50")])
    it.expect_resumed_suffix("pull ahead's step 50 resumed on the general path", records, general)
    stopped_ckpt = ctx.path("ckpt-stopped")
    step = stop_pulling_ahead(ctx, data, stopped_ckpt)
    records, _ = run(ctx, data, f"stopped while pulling ahead at step {step}, resumed",
                     ["--servers", 1, "--checkpoint-dir", stopped_ckpt, "--resume", "auto"])
    it.expect_resumed_suffix(f"stopped while pulling ahead at step {step}, resumed", records,
                             general)


def add_args(p):
    p.add_argument("--mpi", action="store_true",
                   help="compare mpirun with the in-process general path, and resume under it")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
