#!/usr/bin/env python3
"""Checked files, safe outputs and job identity (issue 14, points 4 and 5), end to end.

Modes:
  --mode files
        `convert --input X --output X` and `--output /dev/null` are refused (exit 2) and X is
        intact; a cache with 64 flipped bytes is refused by `train` (exit 2, the cache named),
        never trained on; `export --out /` and `--out` a non-empty directory Tessera did not
        write are refused (exit 2) and the directory is intact; `export --checkpoint /nonexist`
        blames --checkpoint; a manifest whose step or global bias was edited by hand is refused at
        once by a resume and by an export (exit 2, the manifest named), not after --timeout.
  --mode identity [--mpi]
        A job resubmitted from the same directory with --resume auto and a different --lr stops
        with exit 2 naming --lr and both values; with --resume-override lr it says the run is
        finished and exits 0; neither touches the metrics file. With --resume-override lr,epochs
        and more epochs it trains the new epochs. In one process, or under mpirun.
"""

import hashlib
import os
import random
import re
import time

import tessera_it as it

MF_DATA = dict(users=300, items=100, ratings=8000)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def expect_refused(res, what, *needles):
    it.expect_exit(res, 2, what)
    for needle in needles:
        it.check(needle in res.stderr, f"{what}: the message does not say {needle!r}\n{res.tail()}")
    print(f"  {what}: exit 2, {res.stderr.strip().splitlines()[-1]}")


def files_mode(ctx):
    # --- convert onto its own input, onto a device ---
    train, test, _ = ctx.gen_criteo("clicks", rows=3000, seed=3)
    before = digest(train)
    res = ctx.tessera_run(["convert", "--input", train, "--output", train], 120)
    expect_refused(res, "convert --input X --output X", f"--output {train} is the --input")
    it.check(digest(train) == before, "convert destroyed its input")
    res = ctx.tessera_run(["convert", "--input", train, "--output", "/dev/null"], 120)
    expect_refused(res, "convert --output /dev/null", "character device")
    it.check(os.path.exists("/dev/null") and not os.path.isfile("/dev/null"),
             "/dev/null was replaced")

    # --- a cache with 64 flipped bytes is never trained on ---
    cache = ctx.path("train.cache")
    res = ctx.tessera_run(["convert", "--input", train, "--output", cache], 120)
    it.expect_exit(res, 0, "convert")
    with open(cache, "rb") as f:
        intact = f.read()
    rng = random.Random(14)
    ctr = ["train", "--model", "lr", "--train", cache, "--epochs", 1, "--batch-size", 256]
    for at in (200, len(intact) // 2, len(intact) - 70, rng.randrange(128, len(intact) - 64)):
        damaged = bytearray(intact)
        for i in range(at, at + 64):
            damaged[i] ^= 0xFF
        with open(cache, "wb") as f:
            f.write(damaged)
        res = ctx.tessera_run(ctr, 120)
        expect_refused(res, f"train on a cache with 64 bytes flipped at {at}", f"cache {cache}")

    # --- a checkpoint to export and resume ---
    train, test, _ = ctx.gen_ratings("ratings", **MF_DATA)
    ckpt = ctx.path("ckpt")
    args = ["train", "--train", train, "--test", test, "--epochs", 3, "--checkpoint-dir", ckpt,
            "--checkpoint-epochs"]
    it.expect_exit(ctx.tessera_run(args, 120), 0, "the run that writes checkpoints")
    it.check(os.path.exists(os.path.join(ckpt, ".tessera-output")),
             "the checkpoint root has no marker")
    steps = sorted(int(d.split("-")[1]) for d in os.listdir(ckpt) if d.startswith("step-"))
    it.check(len(steps) == 3, f"checkpoints {steps}, expected one per epoch")
    first = os.path.join(ckpt, f"step-{steps[0]}")

    # --- export refuses / and a directory it did not write; blames --checkpoint ---
    res = ctx.tessera_run(["export", "--checkpoint", first, "--out", "/"], 60)
    expect_refused(res, "export --out /", "--out / is the root directory")
    foreign = ctx.path("home")
    os.makedirs(foreign)
    with open(os.path.join(foreign, "thesis.tex"), "w", encoding="utf-8") as f:
        f.write("keep me\n")
    res = ctx.tessera_run(["export", "--checkpoint", first, "--out", foreign], 60)
    expect_refused(res, "export --out a foreign directory", "Tessera did not write")
    it.check(sorted(os.listdir(foreign)) == ["thesis.tex"], f"{foreign} was changed")
    res = ctx.tessera_run(["export", "--checkpoint", "/nonexist", "--out", ctx.path("e")], 60)
    expect_refused(res, "export --checkpoint /nonexist", "--checkpoint /nonexist")
    it.check("--resume" not in res.stderr, f"the message blames --resume\n{res.tail()}")
    export = ctx.path("export")
    for _ in range(2):  # a second export replaces the first one whole
        res = ctx.tessera_run(["export", "--checkpoint", first, "--out", export], 60)
        it.expect_exit(res, 0, "export into a new, then its own directory")
    it.check(os.path.exists(os.path.join(export, "model.json")), "no model.json in the export")

    # --- a manifest edited by hand: step, then global bias ---
    manifest = os.path.join(first, "manifest.json")
    with open(manifest, encoding="utf-8") as f:
        original = f.read()
    edits = [("step", re.sub(r'"step": "(\d+)"', lambda m: f'"step": "{int(m.group(1)) + 1}"',
                             original, count=1)),
             ("global_bias", re.sub(r'"global_bias": ([-0-9.e]+)', '"global_bias": 9.5', original,
                                    count=1))]
    for field, text in edits:
        it.check(text != original, f"no {field} in {manifest}")
        with open(manifest, "w", encoding="utf-8") as f:
            f.write(text)
        start = time.monotonic()
        res = ctx.tessera_run(args + ["--resume", first, "--timeout", 600], 120)
        took = time.monotonic() - start
        expect_refused(res, f"resume from a manifest with an edited {field}",
                       f"manifest {manifest}", "checksum")
        it.check(took < 30, f"the refusal took {took:.0f} s")
        if field == "step":
            it.check("field step is" in res.stderr, f"the message does not name the field\n"
                                                    f"{res.tail()}")
        res = ctx.tessera_run(["export", "--checkpoint", first, "--out", ctx.path("e2")], 60)
        expect_refused(res, f"export of a manifest with an edited {field}", f"manifest {manifest}")
    with open(manifest, "w", encoding="utf-8") as f:
        f.write(original)


def identity_mode(ctx):
    mpi = ctx.args.mpi
    train, test, _ = ctx.gen_ratings("ratings", **MF_DATA)
    # Relative paths, resubmitted from the same directory, as a cluster user does.
    os.chdir(ctx.tmp)
    train, test = os.path.relpath(train), os.path.relpath(test)
    base = ["train", "--train", train, "--test", test, "--checkpoint-dir", "checkpoints", "--metrics-out", "metrics.jsonl", "--resume",
            "auto", "--timeout", 60]

    def run(extra):
        if mpi:
            return ctx.mpirun(4, base + ["--servers", 2] + extra, 300)
        return ctx.tessera_run(base + ["--servers", 2, "--workers", 2] + extra, 300)

    res = run(["--epochs", 3, "--lr", 0.05])
    it.expect_exit(res, 0, "the first job")
    first = digest("metrics.jsonl")
    records = it.read_metrics("metrics.jsonl")
    it.check(records[-1].get("event") == "done", f"the first job has no done record: {records}")

    res = run(["--epochs", 3, "--lr", 0.1])
    expect_refused(res, "the same job resubmitted with --lr 0.1", "--lr 0.05 (this run: 0.1)",
                   "--resume-override lr")
    it.check(digest("metrics.jsonl") == first, "the refused job changed the metrics file")

    res = run(["--epochs", 3, "--lr", 0.1, "--resume-override", "lr"])
    it.expect_exit(res, 0, "the resubmitted job with --resume-override lr")
    it.check("is the end of a finished run" in res.stderr,
             f"the job does not say the run is finished\n{res.tail()}")
    it.check(digest("metrics.jsonl") == first, "resuming a finished run changed the metrics file")
    print("  --resume-override lr: the run is finished, exit 0, metrics unchanged")

    res = run(["--lr", 0.1, "--epochs", 4, "--resume-override", "lr,epochs"])
    it.expect_exit(res, 0, "the job with more epochs")
    records = it.read_metrics("metrics.jsonl")
    trained = [int(r["epoch"]) for r in records if r.get("event") == "train"]
    it.check(trained == [1, 2, 3, 4], f"train records for epochs {trained}, expected 1..4")
    it.check(all(v not in ("null", None) and "nan" not in str(v).lower()
                 for r in records for v in r.values()), f"a metric is null or nan: {records}")
    print(f"  --resume-override lr,epochs --epochs 4: trained epoch 4 ({len(records)} records)")


def add_args(p):
    p.add_argument("--mode", choices=["files", "identity"], required=True)
    p.add_argument("--mpi", action="store_true", help="identity mode under mpirun")


if __name__ == "__main__":
    def test(ctx):
        (files_mode if ctx.args.mode == "files" else identity_mode)(ctx)
    it.main(test, __doc__.splitlines()[0], add_args)
