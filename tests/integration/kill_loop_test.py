#!/usr/bin/env python3
"""Kill loop: SIGKILL of a random role at a random moment, resumed with --resume auto, ends
bit-identical to the uninterrupted run.

Each trial runs one --deterministic job (MF or DeepFM, a few hundred steps, a checkpoint every
few steps) under mpirun with 1 scheduler, 2 servers and 2 workers, always with --resume auto and
the same configuration, as a requeued batch job is. One to three times a random rank (scheduler,
server or worker) is killed with SIGKILL once the newest checkpoint has reached a random step,
after a random delay (so the kill lands mid-step, mid-pull or mid-checkpoint); the job is started
again; the last start must finish with exit 0. Then
  - what the last start reports (its metrics, from the step it resumed at) is the end of what the
    uninterrupted run reported (recovery_test.compare_to_reference), and
  - `tessera export` of its final checkpoint equals, file by file and byte by byte, the export of
    the uninterrupted run's final checkpoint (model.json up to the checkpoint's path).
When a kill's delay carries it past the final checkpoint, the last start resumes a finished run:
it must exit 0 without writing metrics (issue 14, point 5), and its export is compared. When it
carries it past the job's end (a fast run), that start is the last one and must end as the
uninterrupted run does.
The uninterrupted run is one process (--deterministic runs are bit-identical across launchers:
determinism_test.py). Every choice of a trial comes from random.Random(f"{seed}/{trial}"), so a
failing trial is reproduced with --seed S --first-trial T --trials 1 (timing can still move a
kill by a few steps). The test runs every trial, prints one summary line
("kill loop: N trials, M bit-identical, ...") and fails if any trial failed.
"""

import filecmp
import json
import os
import random
import signal
import time

import recovery_test
import tessera_it as it

KILL_LOOP_SEED = 20261206
RANKS = 5  # scheduler, server:0, server:1, worker:0, worker:1
ROLE_OF_RANK = ["scheduler", "server:0", "server:1", "worker:0", "worker:1"]
MF_DATA = dict(users=1500, items=500, ratings=30000)
MF_ARGS = ["--epochs", 6, "--batch-size", 256, "--deterministic", "--seed", 3]
CTR_ROWS = 8000
CTR_ARGS = ["--model", "deepfm", "--emb-dim", 8, "--mlp", "32,16", "--batch-size", 256,
            "--epochs", 16, "--eval-every", 40, "--deterministic", "--seed", 5]
EVERY = 10  # --checkpoint-every (steps)
LIMIT_S = 180  # one start of the job


class Model:
    """Data, arguments and the uninterrupted run (metrics, export) of one model."""

    def __init__(self, ctx, name):
        self.name = name
        if name == "mf":
            train, test, _ = ctx.gen_ratings(f"data-{name}", **MF_DATA)
            self.args = ["train", "--train", train, "--test", test] + MF_ARGS
        else:
            out = ctx.path(f"data-{name}")
            res = ctx.tessera_run(["gen", "criteo", "--rows", CTR_ROWS, "--seed", 5, "--out",
                                   out], 300)
            it.expect_exit(res, 0, "tessera gen criteo")
            self.args = ["train", "--train", os.path.join(out, "train.tsv"), "--test",
                         os.path.join(out, "test.tsv")] + CTR_ARGS
        ckpt = ctx.path(f"reference-{name}")
        metrics = ctx.path(f"reference-{name}.jsonl")
        res = ctx.tessera_run(self.args + ["--servers", 2, "--workers", 2, "--checkpoint-dir",
                                           ckpt, "--checkpoint-every", EVERY, "--metrics-out",
                                           metrics], 600)
        it.expect_exit(res, 0, f"the uninterrupted {name} run")
        self.reference = it.read_metrics(metrics)
        steps = it.grep(r"x (\d+) steps/epoch", res.stderr)
        it.check(steps, f"no steps/epoch in the log\n{res.tail()}")
        epochs = int(self.args[self.args.index("--epochs") + 1])
        self.total_steps = int(steps.group(1)) * epochs
        self.export = export(ctx, ckpt, f"reference-{name}")
        print(f"  {name}: {self.total_steps} steps, uninterrupted run {res.seconds:.1f} s")

    def job_args(self, ckpt, metrics):
        return self.args + ["--servers", 2, "--checkpoint-dir", ckpt, "--checkpoint-every", EVERY,
                            "--resume", "auto", "--metrics-out", metrics, "--timeout", 60,
                            "--register-timeout", 60, "--heartbeat-timeout", 4]


def export(ctx, ckpt, name):
    out = ctx.path(f"export-{name}")
    res = ctx.tessera_run(["export", "--checkpoint", ckpt, "--out", out], 120)
    it.expect_exit(res, 0, f"tessera export of {ckpt}")
    return out


def files_under(root):
    return {os.path.relpath(os.path.join(d, f), root)
            for d, _, files in os.walk(root) for f in files}


def exports_differ(got, want):
    """A list of the differences between two export directories (empty when identical)."""
    have, expected = files_under(got), files_under(want)
    diffs = [f"{name}: only in the resumed run's export" for name in sorted(have - expected)]
    diffs += [f"{name}: missing from the resumed run's export" for name in sorted(expected - have)]
    for name in sorted(have & expected):
        a, b = os.path.join(got, name), os.path.join(want, name)
        if name == "model.json":
            with open(a, encoding="utf-8") as fa, open(b, encoding="utf-8") as fb:
                ja, jb = json.load(fa), json.load(fb)
            ja.pop("checkpoint", None)
            jb.pop("checkpoint", None)
            if ja != jb:
                diffs.append("model.json differs (beyond the checkpoint's path)")
        elif not filecmp.cmp(a, b, shallow=False):
            diffs.append(f"{name} differs")
    return diffs


def run_trial(ctx, models, seed, trial):
    """Runs one trial; returns (ok, one line describing it)."""
    rng = random.Random(f"{seed}/{trial}")
    model = models[trial % len(models)]
    tag = f"trial {trial} (seed {seed}, {model.name})"
    ckpt = ctx.path(f"ckpt-{trial}")
    kills = rng.choice([1, 1, 2, 3])
    story = []
    floor = EVERY
    for start in range(kills + 1):
        metrics = ctx.path(f"trial-{trial}-start-{start}.jsonl")
        cmd = [ctx.mpiexec, "-np", RANKS, ctx.tessera] + model.job_args(ckpt, metrics)
        last = start == kills
        resumed_from = recovery_test.latest_step(ckpt)
        with recovery_test.Job(ctx, cmd, f"trial-{trial}-start-{start}", mpi=True) as job:
            if not last:
                # The newest checkpoint must move on by at least one interval between kills, and
                # the kills are drawn well before the final checkpoint (the delay may still carry
                # one past it: then the last start resumes a finished run).
                high = model.total_steps - 4 * EVERY
                target = rng.randrange(min(floor, high - 1), high)
                victim = rng.randrange(RANKS)
                delay_s = rng.randrange(0, 300) / 1000
                pids = recovery_test.wait_for(
                    f"all {RANKS} ranks", lambda: (lambda p: p if len(p) == RANKS else None)(
                        recovery_test.rank_pids(ckpt)), job, LIMIT_S)
                recovery_test.wait_for(f"a checkpoint at step >= {target}",
                                       lambda: recovery_test.latest_step(ckpt) >= target, job,
                                       LIMIT_S)
                time.sleep(delay_s)
                killed = False
                if job.proc.poll() is None:
                    try:
                        os.kill(pids[victim], signal.SIGKILL)
                        killed = True
                    except ProcessLookupError:
                        pass  # the rank has exited: the job is at its end
                if not killed:
                    # A fast run can reach its end within the delay: then it must end as the
                    # uninterrupted run does, and it is the trial's last start.
                    status = job.wait(LIMIT_S)
                    if status != 0:
                        return False, (f"{tag}: the job ended (exit {status}) before the kill at "
                                       f"checkpoint >= {target}\n{job.tail()}")
                    story.append(f"the job ended before the kill at checkpoint >= {target} + "
                                 f"{int(delay_s * 1000)} ms")
                    text = job.text()
                    break
                status = job.wait(LIMIT_S)
                at = recovery_test.latest_step(ckpt)
                story.append(f"SIGKILL {ROLE_OF_RANK[victim]} at checkpoint >= {target} "
                             f"+ {int(delay_s * 1000)} ms (mpirun exit {status}, latest step-{at})")
                if status == 0 and at == model.total_steps:
                    # The rank had finished (a zombie takes the signal): the job ran to its end.
                    text = job.text()
                    break
                if status == 0:
                    return False, f"{tag}: mpirun exited 0 after SIGKILL of rank {victim}"
                floor = at + EVERY
            else:
                status = job.wait(LIMIT_S)
                if status != 0:
                    return False, (f"{tag}: the last start exited {status} after "
                                   f"{'; '.join(story)}\n{job.tail()}")
                text = job.text()
    if resumed_from == model.total_steps:
        # Killed after its final checkpoint: the last start resumes a finished run, which says
        # so, exits 0 and writes no metrics (issue 14, point 5).
        records = it.read_metrics(metrics) if os.path.exists(metrics) else []
        if records:
            return False, (f"{tag}: {'; '.join(story)}: resuming the finished run wrote "
                           f"metrics {records}")
        story.append("the last start resumed the finished run and wrote no metrics")
    else:
        if resumed_from > 0 and not it.grep(r"resuming from .*step-\d+", text):
            return False, (f"{tag}: the last start did not resume from a checkpoint\n"
                           f"{text[-3000:]}")
        try:
            recovery_test.compare_to_reference(tag, metrics, model.reference)
        except it.TestFailure as e:
            return False, f"{tag}: {'; '.join(story)}: {e}"
    diffs = exports_differ(export(ctx, ckpt, f"trial-{trial}"), model.export)
    if diffs:
        return False, f"{tag}: {'; '.join(story)}: the exports differ: {diffs}"
    ran = "resumed" if resumed_from > 0 else "never killed"
    return True, (f"{tag}: {'; '.join(story)}; {ran}: bit-identical metrics and export "
                  f"({len(files_under(model.export))} files)")


def test(ctx):
    a = ctx.args
    seed = int(os.environ.get("TESSERA_IT_SEED", str(a.seed)))
    print(f"kill loop: seed {seed}, trials {a.first_trial}..{a.first_trial + a.trials - 1} "
          f"(--seed/TESSERA_IT_SEED and --first-trial pick others)")
    models = [Model(ctx, name) for name in a.models.split(",")]
    results = []
    start = time.monotonic()
    for trial in range(a.first_trial, a.first_trial + a.trials):
        t0 = time.monotonic()
        try:
            ok, line = run_trial(ctx, models, seed, trial)
        except it.TestFailure as e:
            ok, line = False, f"trial {trial} (seed {seed}): {e}"
        results.append((ok, line))
        print(f"{'OK' if ok else 'FAILED'} ({time.monotonic() - t0:.0f} s) {line}", flush=True)
    failed = [line for ok, line in results if not ok]
    print(f"kill loop: {len(results)} trials, {len(results) - len(failed)} bit-identical, "
          f"{len(failed)} failed (seed {seed}, {time.monotonic() - start:.0f} s)")
    it.check(not failed, "failed trials:\n" + "\n".join(failed))


def add_args(p):
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--first-trial", type=int, default=0)
    p.add_argument("--seed", type=int, default=KILL_LOOP_SEED)
    p.add_argument("--models", default="mf,deepfm", help="models the trials take in turn")


if __name__ == "__main__":
    it.main(test, __doc__.splitlines()[0], add_args)
