#!/usr/bin/env python3
"""A run resumed from a checkpoint starts at that checkpoint's step, by its own output.

An MF run (--deterministic, 2 servers, 2 workers) writes a checkpoint every START_EVERY steps and
finishes; a second run resumes from a mid-epoch checkpoint past the first epoch. The resumed run
must name the checkpoint's step in its start-up lines, write metrics and epoch lines only from
the checkpoint's epoch on, write checkpoints only after that step, and end bit-identical to the
finished run (recovery_test.compare_to_reference). That last check alone would pass a run that
ignored the checkpoint and retrained from scratch deterministically. Seeds are fixed.
"""

import os
import re

import recovery_test
import tessera_it as it

START_DATA = dict(users=2000, items=500, ratings=40000)
START_ARGS = ["--epochs", 6, "--batch-size", 256, "--deterministic", "--seed", 3, "--servers", 2,
              "--workers", 2]
START_EVERY = 50


def check_started_at(name, res, metrics, ckpt, step, steps_per_epoch, epochs, every):
    """Fails unless the resumed run (Result res, its --metrics-out and --checkpoint-dir) began at
    global step `step` and trained only the steps after it."""
    epoch, in_epoch = divmod(step, steps_per_epoch)  # 0-based epoch of the checkpoint's step
    # The start-up lines name the checkpoint's step and its place in the epoch.
    line = it.grep(r"resuming from \S*step-(\d+) \(step (\d+),", res.stderr)
    it.check(line and int(line.group(1)) == step and int(line.group(2)) == step,
             f"{name}: no 'resuming from .../step-{step} (step {step}, ...' line\n{res.tail()}")
    line = it.grep(r"resumed from \S* at step (\d+) \(epoch (\d+), step (\d+) of (\d+)\)",
                   res.stderr)
    it.check(line and [int(g) for g in line.groups()] == [step, epoch + 1, in_epoch,
                                                          steps_per_epoch],
             f"{name}: the worker does not say it resumed at step {step} (epoch {epoch + 1}, step "
             f"{in_epoch} of {steps_per_epoch})\n{res.tail()}")
    # Its metrics start with the checkpoint's epoch: one train record per remaining epoch.
    records = it.read_metrics(metrics)
    trained = [int(r["epoch"]) for r in records if r.get("event") == "train"]
    it.check(records and records[0].get("event") == "train" and
             trained == list(range(epoch + 1, epochs + 1)),
             f"{name}: train records for epochs {trained}, expected {epoch + 1}..{epochs} "
             f"(first record {records[:1]})")
    # So do its per-epoch lines on stderr.
    lines = [int(m) for m in re.findall(rf"epoch (\d+)/{epochs}: train", res.stderr)]
    it.check(lines == list(range(epoch + 1, epochs + 1)),
             f"{name}: epoch lines {lines}, expected {epoch + 1}..{epochs}\n{res.tail()}")
    # The checkpoints it wrote are the step multiples of --checkpoint-every after `step` (and
    # the final one): a run that began at step 0 would write the earlier ones too.
    total = epochs * steps_per_epoch
    written = sorted(int(d.split("-")[1]) for d in os.listdir(ckpt)
                     if d.startswith("step-") and not d.endswith(".tmp"))
    want = sorted(set(range((step // every + 1) * every, total + 1, every)) | {total})
    it.check(written == want, f"{name}: checkpoints at steps {written}, expected {want}")
    print(f"  {name}: began at step {step} (epoch {epoch + 1}, step {in_epoch} of "
          f"{steps_per_epoch}); trained epochs {trained[0]}..{trained[-1]}, checkpoints {written}")


def test(ctx):
    """A run resumed from a mid-epoch checkpoint starts there, by its own output."""
    train, test, _ = ctx.gen_ratings("data", **START_DATA, seed=4)
    args = ["train", "--train", train, "--test", test] + START_ARGS
    epochs = int(START_ARGS[START_ARGS.index("--epochs") + 1])
    ckpt = ctx.path("ckpt")
    metrics = ctx.path("full.jsonl")
    res = ctx.tessera_run(args + ["--checkpoint-dir", ckpt, "--checkpoint-every", START_EVERY,
                                  "--metrics-out", metrics], 300)
    it.expect_exit(res, 0, "the run that writes the checkpoints")
    reference = it.read_metrics(metrics)
    found = it.grep(r"x (\d+) steps/epoch", res.stderr)
    it.check(found, f"no steps/epoch in the log\n{res.tail()}")
    steps_per_epoch = int(found.group(1))
    steps = sorted(int(d.split("-")[1]) for d in os.listdir(ckpt) if d.startswith("step-"))
    # A checkpoint inside an epoch past the first, as near the middle of the run as there is.
    middle = [s for s in steps if s % steps_per_epoch and s >= steps_per_epoch]
    it.check(middle, f"no mid-epoch checkpoint past epoch 1 among {steps} "
                     f"({steps_per_epoch} steps/epoch)")
    step = min(middle, key=lambda s: abs(s - epochs * steps_per_epoch // 2))
    resumed_ckpt = ctx.path("ckpt-resumed")
    resumed = ctx.path("resumed.jsonl")
    res = ctx.tessera_run(args + ["--resume", os.path.join(ckpt, f"step-{step}"),
                                  "--checkpoint-dir", resumed_ckpt, "--checkpoint-every",
                                  START_EVERY, "--metrics-out", resumed], 300)
    it.expect_exit(res, 0, f"the run resumed from step-{step}")
    check_started_at(f"resumed from step {step}", res, resumed, resumed_ckpt, step,
                     steps_per_epoch, epochs, START_EVERY)
    recovery_test.compare_to_reference(f"resumed from step {step}", resumed, reference)


if __name__ == "__main__":
    it.main(test, __doc__.splitlines()[0])
