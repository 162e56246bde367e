#!/usr/bin/env python3
"""Checkpoints, resume, signals, lost nodes and exports, end to end.

Modes:
  --mode kill --model mf|deepfm
        --deterministic runs under mpirun (1 scheduler + 2 servers + 2 workers) are killed with
        SIGKILL at a random step (a server, a worker, the scheduler: one run each), then resumed
        with --resume auto (in one process with 3 servers, under mpirun with 1 server, under
        mpirun with 2): every resumed run ends bit-identical to an uninterrupted run.
  --mode torn
        A process killed while a checkpoint is being written leaves the previous checkpoint
        complete (`latest` names it, its manifest and files check out) and usable: resuming
        from it ends bit-identical to an uninterrupted run.
  --mode signals
        SIGUSR1 writes a checkpoint and training goes on (same result); SIGTERM writes one and
        stops with status 143, in one process and under mpirun (the signal sent to one worker
        rank); the resumed runs end bit-identical to an uninterrupted run.
  --mode lost
        Under mpirun a stopped (SIGSTOP) server, worker or scheduler is detected by the
        heartbeats and a killed worker by mpirun: every process exits non-zero within 15 s, the message names the
        lost node, the step and the --resume to use.
  --mode full
        A checkpoint that runs out of disk space ends the job with one line giving the reason and
        the previous checkpoint to resume from, and that checkpoint is intact.
  --mode export
        `tessera export` writes .npy files numpy.load reads (and a text form with the same
        values); scores computed from them in Python equal `tessera recommend`'s; a DeepFM
        export has the dense parameters and layer shapes of model.json.
The kill steps are drawn with a fixed seed (KILL_SEED, printed); TESSERA_IT_SEED picks another.

Slow checkpoint files and a full disk come from the test hook TESSERA_TEST_FAULT_ENV (a
fault-injecting file environment in the tessera processes; tests/README.md).
"""

import json
import os
import random
import signal
import subprocess
import time

import tessera_it as it

KILL_LIMIT_S = 120
KILL_SEED = 20261206
MF_DATA = dict(users=2000, items=500, ratings=100000)
MF_ARGS = ["--epochs", 25, "--batch-size", 256, "--deterministic", "--seed", 3]
# The test hook (tests/README.md): servers take `ms` to create each checkpoint row file.
FAULT_ENV = "TESSERA_TEST_FAULT_ENV"


def slow_row_files(ms):
    return {FAULT_ENV: f"create_delay_ms={ms},create_delay_suffix=.rows"}


CTR_ARGS = ["--model", "deepfm", "--emb-dim", 8, "--mlp", "32,16", "--batch-size", 256,
            "--epochs", 3, "--eval-every", 25, "--deterministic", "--seed", 5]


class Job:
    """A tessera (or mpirun) process group started in the background, its stderr in a file."""

    def __init__(self, ctx, cmd, name, mpi=False, extra_env=None):
        self.name = name
        self.log_path = ctx.path(f"{name}.log")
        env = dict(os.environ)
        env.update(ctx.env())
        if mpi:
            env.update(it.MPI_ENV)
        if extra_env:
            env.update(extra_env)
        self.cmd = [str(c) for c in cmd]
        print(f"$ {' '.join(self.cmd)}   (background: {name})", flush=True)
        self.log = open(self.log_path, "w", encoding="utf-8")
        self.start = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait(self, limit_s):
        """Exit status; kills the whole group if it does not end within limit_s."""
        try:
            return self.proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise it.TestFailure(f"{self.name}: still running after {limit_s} s\n"
                                 f"{self.tail()}")
        finally:
            self.log.flush()

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def tail(self, lines=40):
        return "\n".join(self.text().splitlines()[-lines:])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.kill()
        self.log.close()
        return False


def wait_for(what, predicate, job, limit_s=KILL_LIMIT_S):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if job.proc.poll() is not None:
            raise it.TestFailure(f"{job.name} ended (exit {job.proc.returncode}) before {what}\n"
                                 f"{job.tail()}")
        time.sleep(0.02)
    raise it.TestFailure(f"{job.name}: no {what} within {limit_s} s\n{job.tail()}")


def latest_step(ckpt):
    try:
        with open(os.path.join(ckpt, "latest"), encoding="utf-8") as f:
            name = f.read().strip()
    except OSError:
        return -1
    return int(name.split("-")[1]) if name.startswith("step-") else -1


def rank_pids(marker):
    """{rank: pid} of the mpirun ranks whose command line contains `marker`."""
    pids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
            if marker.encode() not in cmdline or not cmdline[0].endswith(b"tessera"):
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        if b"OMPI_COMM_WORLD_RANK" in env:
            pids[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(entry)
    return pids


def series_from(records, first_epoch):
    """The model numbers of the records from `first_epoch` on (and the final one)."""
    kept = [r for r in records
            if r.get("event") == "done" or int(r.get("epoch", "0")) >= first_epoch]
    return it.model_series(kept)


def compare_to_reference(name, resumed_metrics, reference):
    records = it.read_metrics(resumed_metrics)
    it.check(records, f"{name}: the resumed run wrote no metrics")
    first = min(int(r["epoch"]) for r in records if "epoch" in r)
    got = it.model_series(records)
    # Everything the resumed run reports (from the step it resumed at) is the end of what the
    # uninterrupted run reported: the epoch it resumed in, its evaluations after that step, ...
    want = series_from(reference, first)
    it.check(got and any(k == "loss" for _, _, k, _ in got) and want[len(want) - len(got):] == got,
             f"{name}: the resumed run differs from the uninterrupted one:\n"
             f"resumed {got}\nreference {want}")
    print(f"  {name}: resumed at epoch {first}; {len(got)} numbers bit-identical to the "
          f"uninterrupted run")


class Setup:
    """Data and arguments of one model, and its uninterrupted reference run."""

    def __init__(self, ctx, model):
        self.ctx = ctx
        if model == "mf":
            train, test, _ = ctx.gen_ratings("data", **MF_DATA)
            self.args = ["train", "--train", train, "--test", test] + MF_ARGS
            self.every = 150
        else:
            out = ctx.path("data")
            res = ctx.tessera_run(["gen", "criteo", "--rows", 24000, "--seed", 5, "--out", out],
                                  300)
            it.expect_exit(res, 0, "tessera gen criteo")
            self.args = ["train", "--train", os.path.join(out, "train.tsv"), "--test",
                         os.path.join(out, "test.tsv")] + CTR_ARGS
            self.every = 20
        metrics = ctx.path("reference.jsonl")
        res = ctx.tessera_run(self.args + ["--servers", 2, "--workers", 2, "--metrics-out",
                                           metrics], 600)
        it.expect_exit(res, 0, "the uninterrupted reference run")
        self.reference = it.read_metrics(metrics)
        steps = it.grep(r"x (\d+) steps/epoch", res.stderr)
        it.check(steps, f"no steps/epoch in the log\n{res.tail()}")
        epochs = int(self.args[self.args.index("--epochs") + 1])
        self.total_steps = int(steps.group(1)) * epochs

    def run_args(self, ckpt, metrics, extra=()):
        return (self.args + ["--checkpoint-dir", ckpt, "--metrics-out", metrics, "--timeout", 60,
                             "--register-timeout", 60, "--heartbeat-timeout", 4] + list(extra))


def kill_mode(ctx):
    setup = Setup(ctx, ctx.args.model)
    seed = int(os.environ.get("TESSERA_IT_SEED", str(KILL_SEED)))
    rng = random.Random(seed)
    print(f"kill steps drawn with seed {seed} (TESSERA_IT_SEED=N draws others)")
    # victim rank (0 scheduler, 1-2 servers, 3-4 workers) -> how the job is resumed
    cases = [
        ("server", rng.choice([1, 2]), "in one process, 3 servers", None, ["--servers", 3,
                                                                            "--workers", 2]),
        ("worker", rng.choice([3, 4]), "mpirun, 1 server", 4, ["--servers", 1]),
        ("scheduler", 0, "mpirun, 2 servers", 5, ["--servers", 2]),
    ]
    for victim, rank, resume_how, resume_ranks, resume_extra in cases:
        ckpt = ctx.path(f"ckpt-{victim}")
        target = rng.randrange(2 * setup.every, max(3 * setup.every, setup.total_steps // 2))
        name = f"kill-{victim}"
        cmd = [ctx.mpiexec, "-np", 5, ctx.tessera] + setup.run_args(
            ckpt, ctx.path(f"{name}.jsonl"),
            ["--servers", 2, "--checkpoint-every", setup.every, "--keep-checkpoints", 2])
        with Job(ctx, cmd, name, mpi=True) as job:
            wait_for(f"a checkpoint at step >= {target}", lambda: latest_step(ckpt) >= target, job)
            pids = wait_for("all 5 ranks", lambda: (lambda p: p if len(p) == 5 else None)(
                rank_pids(ckpt)), job)
            os.kill(pids[rank], signal.SIGKILL)
            killed_at = time.monotonic()
            status = job.wait(KILL_LIMIT_S)
            it.check(status != 0, f"{name}: mpirun exited 0 after SIGKILL of rank {rank}")
            complete = [d for d in os.listdir(ckpt)
                        if d.startswith("step-") and not d.endswith(".tmp")]
            # A kill between a commit and its pruning may leave one more.
            it.check(1 <= len(complete) <= 3, f"--keep-checkpoints 2 left {sorted(complete)}")
            print(f"  SIGKILL of the {victim} (rank {rank}) after checkpoint step "
                  f"{latest_step(ckpt)}: mpirun exited {status} after "
                  f"{time.monotonic() - killed_at:.1f} s")
        resumed = ctx.path(f"{name}-resumed.jsonl")
        args = setup.run_args(ckpt, resumed, ["--resume", "auto"] + resume_extra)
        if resume_ranks:
            res = ctx.mpirun(resume_ranks, args, 600)
        else:
            res = ctx.tessera_run(args, 600)
        it.expect_exit(res, 0, f"resume after killing the {victim} ({resume_how})")
        it.check(it.grep(r"resuming from .*step-\d+", res.stderr),
                 f"the resumed run did not say where it resumed from\n{res.tail()}")
        compare_to_reference(f"killed {victim}, resumed {resume_how}", resumed, setup.reference)


def torn_mode(ctx):
    setup = Setup(ctx, "mf")
    ckpt = ctx.path("ckpt")
    metrics = ctx.path("torn.jsonl")
    # Servers take 0.4 s to create each checkpoint row file, so the kill lands mid-write.
    cmd = [ctx.tessera] + setup.run_args(ckpt, metrics, [
        "--servers", 2, "--workers", 2, "--checkpoint-every", setup.every])
    with Job(ctx, cmd, "torn", extra_env=slow_row_files(400)) as job:
        wait_for("a complete checkpoint", lambda: latest_step(ckpt) >= setup.every, job)
        complete = latest_step(ckpt)
        tmp = wait_for("a checkpoint being written", lambda: [
            d for d in os.listdir(ckpt) if d.endswith(".tmp") and
            os.path.exists(os.path.join(ckpt, d, "worker-0.state"))], job)
        time.sleep(0.2)
        job.kill()
    complete = latest_step(ckpt)
    previous = os.path.join(ckpt, f"step-{complete}")
    print(f"  killed while writing {tmp[0]}; latest -> step-{complete}")
    it.check(os.path.exists(os.path.join(previous, "manifest.json")),
             f"{previous} has no manifest after the kill")
    it.check(not os.path.exists(os.path.join(ckpt, tmp[0], "manifest.json")),
             f"the interrupted {tmp[0]} has a manifest")
    # The previous checkpoint exports cleanly: every file is there with its checksum.
    res = ctx.tessera_run(["export", "--checkpoint", previous, "--out", ctx.path("export")], 120)
    it.expect_exit(res, 0, "export of the previous checkpoint")
    resumed = ctx.path("torn-resumed.jsonl")
    res = ctx.tessera_run(setup.run_args(ckpt, resumed, ["--servers", 2, "--workers", 2,
                                                         "--resume", "auto"]), 600)
    it.expect_exit(res, 0, "resume after the torn checkpoint")
    it.check(f"step-{complete}" in res.stderr, f"did not resume from step-{complete}\n"
                                               f"{res.tail()}")
    it.check(not any(d.endswith(".tmp") for d in os.listdir(ckpt)),
             f"leftover .tmp directories: {os.listdir(ckpt)}")
    compare_to_reference("torn checkpoint", resumed, setup.reference)


def signals_mode(ctx):
    setup = Setup(ctx, "mf")
    # SIGUSR1: a checkpoint, and the run goes on to the same end.
    ckpt = ctx.path("ckpt-usr1")
    metrics = ctx.path("usr1.jsonl")
    cmd = [ctx.tessera] + setup.run_args(ckpt, metrics, ["--servers", 2, "--workers", 2])
    with Job(ctx, cmd, "usr1") as job:
        wait_for("training", lambda: "epoch 2/" in job.text(), job)
        job.proc.send_signal(signal.SIGUSR1)
        status = job.wait(KILL_LIMIT_S)
        it.check(status == 0, f"SIGUSR1: exit {status}\n{job.tail()}")
        it.check("SIGUSR1 received" in job.text(), f"SIGUSR1 not reported\n{job.tail()}")
    steps = sorted(int(d.split("-")[1]) for d in os.listdir(ckpt) if d.startswith("step-"))
    it.check(len(steps) >= 2 and steps[0] < setup.total_steps,
             f"SIGUSR1 wrote no checkpoint before the final one: {steps}")
    it.check(it.model_series(it.read_metrics(metrics)) == it.model_series(setup.reference),
             "the run that took a SIGUSR1 checkpoint differs from the uninterrupted one")
    print(f"  SIGUSR1: checkpoint at step {steps[0]}, run finished unchanged")

    # SIGTERM while the SIGUSR1 checkpoint is being written: a second checkpoint, then a stop.
    ckpt = ctx.path("ckpt-usr1-term")
    metrics = ctx.path("usr1-term.jsonl")
    cmd = [ctx.tessera] + setup.run_args(ckpt, metrics, ["--servers", 2, "--workers", 2])
    with Job(ctx, cmd, "usr1-term", extra_env=slow_row_files(500)) as job:
        wait_for("training", lambda: "epoch 2/" in job.text(), job)
        job.proc.send_signal(signal.SIGUSR1)
        wait_for("the SIGUSR1 checkpoint being written",
                 lambda: any(d.endswith(".tmp") for d in os.listdir(ckpt)), job)
        job.proc.send_signal(signal.SIGTERM)
        status = job.wait(KILL_LIMIT_S)
        text = job.text()
    steps = sorted(int(d.split("-")[1]) for d in os.listdir(ckpt) if d.startswith("step-"))
    it.check(status == 143 and len(steps) == 2 and steps[1] > steps[0],
             f"SIGTERM during the SIGUSR1 checkpoint: exit {status}, checkpoints {steps}\n"
             f"{text[-3000:]}")
    resumed = ctx.path("usr1-term-resumed.jsonl")
    res = ctx.tessera_run(setup.run_args(ckpt, resumed, ["--servers", 2, "--workers", 2,
                                                         "--resume", "auto"]), 600)
    it.expect_exit(res, 0, "resume after SIGTERM during the SIGUSR1 checkpoint")
    compare_to_reference(f"SIGTERM during the SIGUSR1 checkpoint (steps {steps})", resumed,
                         setup.reference)

    # SIGTERM: a checkpoint, then every node stops (143); resume gives the same end.
    for where in ("one process", "mpirun"):
        ckpt = ctx.path(f"ckpt-term-{where[0]}")
        metrics = ctx.path(f"term-{where[0]}.jsonl")
        if where == "mpirun":
            args = setup.run_args(ckpt, metrics, ["--servers", 2])
            cmd = [ctx.mpiexec, "-np", 5, ctx.tessera] + args
        else:
            cmd = [ctx.tessera] + setup.run_args(ckpt, metrics, ["--servers", 2, "--workers", 2])
        with Job(ctx, cmd, f"term-{where[0]}", mpi=where == "mpirun") as job:
            wait_for("training", lambda: "epoch 2/" in job.text(), job)
            if where == "mpirun":
                # Slurm signals every task; one worker rank is enough to stop the job.
                os.kill(rank_pids(ckpt)[4], signal.SIGTERM)
            else:
                job.proc.send_signal(signal.SIGTERM)
            status = job.wait(KILL_LIMIT_S)
            text = job.text()
        it.check(status != 0, f"SIGTERM ({where}): exit 0")
        if where == "one process":
            it.check(status == 143, f"SIGTERM ({where}): exit {status}, expected 143\n{text}")
        it.check("stopped by a signal after checkpoint" in text and "--resume auto" in text,
                 f"SIGTERM ({where}): no stop message\n{text[-3000:]}")
        step = latest_step(ckpt)
        it.check(0 < step < setup.total_steps, f"SIGTERM ({where}): checkpoint step {step}")
        resumed = ctx.path(f"term-{where[0]}-resumed.jsonl")
        res = ctx.tessera_run(setup.run_args(ckpt, resumed, ["--servers", 1, "--workers", 2,
                                                             "--resume", "auto"]), 600)
        it.expect_exit(res, 0, f"resume after SIGTERM ({where})")
        compare_to_reference(f"SIGTERM ({where}) at step {step}", resumed, setup.reference)


def lost_mode(ctx):
    setup = Setup(ctx, "mf")
    cases = (("server", 2, signal.SIGSTOP, False), ("worker", 3, signal.SIGSTOP, False),
             ("scheduler", 0, signal.SIGSTOP, False), ("worker", 4, signal.SIGKILL, False),
             ("server", 1, signal.SIGSTOP, True))
    for victim, rank, sig, mid_checkpoint in cases:
        ckpt = ctx.path(f"ckpt-lost-{rank}-{sig}-{mid_checkpoint}")
        extra = ["--servers", 2, "--checkpoint-every", setup.every]
        # Mid-checkpoint: servers take 2 s per row file, so the node is lost while they write.
        args = setup.run_args(ckpt, ctx.path("lost.jsonl"), extra)
        with Job(ctx, [ctx.mpiexec, "-np", 5, ctx.tessera] + args, f"lost-{victim}-{rank}",
                 mpi=True, extra_env=slow_row_files(2000) if mid_checkpoint else None) as job:
            if mid_checkpoint:
                wait_for("a checkpoint being written",
                         lambda: os.path.isdir(ckpt) and any(
                             d.endswith(".tmp") for d in os.listdir(ckpt)), job)
            else:
                wait_for("a checkpoint", lambda: latest_step(ckpt) > 0, job)
            pids = wait_for("all 5 ranks", lambda: (lambda p: p if len(p) == 5 else None)(
                rank_pids(ckpt)), job)
            os.kill(pids[rank], sig)
            stopped = time.monotonic()
            status = job.wait(60)
            took = time.monotonic() - stopped
            text = job.text()
        name = f"{signal.Signals(sig).name} of the {victim} (rank {rank})" + (
            " while the servers write a checkpoint" if mid_checkpoint else "")
        it.check(status != 0, f"{name}: mpirun exited 0")
        it.check(took < 15, f"{name}: the job took {took:.1f} s to end (limit 15 s)\n{text}")
        if victim == "scheduler":
            # The others notice that their heartbeats go unanswered.
            line = it.grep(r"^tessera: error: (server|worker):\d: lost the scheduler: .*", text)
            it.check(line, f"{name}: no line about the lost scheduler\n{text[-3000:]}")
            lines = [l for l in text.splitlines() if "lost the scheduler" in l]
            it.check(lines and all(it.grep(r"lost the scheduler: .* at step \d+; last complete "
                                           r"checkpoint .*: continue with --resume .*step-\d+", l)
                                   for l in lines),
                     f"{name}: not every line names the step and the --resume to use\n"
                     f"{text[-3000:]}")
        elif sig == signal.SIGSTOP:
            node = f"{victim}:{rank - 1 if victim == 'server' else rank - 3}"
            line = it.grep(rf"^tessera: error: .*lost {node} \(host .*, pid {pids[rank]}\).*",
                           text)
            it.check(line, f"{name}: no line naming the lost {node}\n{text[-3000:]}")
            it.check(it.grep(r"stopped at step \d+", line.group(0)) and
                     ("--resume " + os.path.join(ckpt, "step-") in line.group(0) or
                      mid_checkpoint and "no checkpoint was completed" in line.group(0)),
                     f"{name}: the line lacks the step or the --resume to use: {line.group(0)}")
            others = sum(1 for l in text.splitlines()
                         if l.startswith("tessera: error: ") and f"lost {node} (host" in l)
            it.check(others >= 4, f"{name}: only {others} processes reported the loss\n{text}")
        print(f"  {name}: every process ended, mpirun exited {status} {took:.1f} s later")


def export_mode(ctx):
    import numpy as np  # Debian's python3-numpy (installed by scripts/install-deps.sh)

    train, test, _ = ctx.gen_ratings("data", 1500, 400, 60000)
    ckpt = ctx.path("ckpt")
    res = ctx.tessera_run(["train", "--train", train, "--test", test, "--epochs", 5,
                           "--batch-size", 256, "--dim", 16, "--checkpoint-dir", ckpt], 300)
    it.expect_exit(res, 0, "MF training with a checkpoint")
    out = ctx.path("export")
    # A checkpoint root exports its latest checkpoint.
    res = ctx.tessera_run(["export", "--checkpoint", ckpt, "--out", out], 120)
    it.expect_exit(res, 0, "tessera export")
    with open(os.path.join(out, "model.json"), encoding="utf-8") as f:
        model = json.load(f)
    it.check(model["model"]["type"] == "mf", f"model.json: {model['model']}")
    mu = float(model["model"]["global_bias"])
    tables = {t["name"]: t for t in model["tables"]}
    arrays = {}
    for name in ("user", "item"):
        t = tables[name]
        keys = np.load(os.path.join(out, t["keys_file"]))
        emb = np.load(os.path.join(out, t["embeddings_file"]))
        bias = np.load(os.path.join(out, t["bias_file"]))
        it.check(keys.dtype == np.uint64 and emb.dtype == np.float32,
                 f"{name}: dtypes {keys.dtype} {emb.dtype}")
        it.check(emb.shape == (len(keys), 16) and bias.shape == (len(keys),),
                 f"{name}: shapes {keys.shape} {emb.shape} {bias.shape}")
        it.check(np.all(np.diff(keys.astype(np.float64)) > 0), f"{name}: keys not sorted/unique")
        it.check(int(t["num_rows"]) == len(keys), f"{name}: num_rows {t['num_rows']}")
        arrays[name] = (keys, emb, bias)
    # The text export holds the same values (factors, then the bias).
    res = ctx.tessera_run(["export", "--checkpoint", ckpt, "--out", ctx.path("text"),
                           "--format", "text"], 120)
    it.expect_exit(res, 0, "tessera export --format text")
    text = np.loadtxt(ctx.path("text", "item.txt"), dtype=np.float64)
    keys, emb, bias = arrays["item"]
    it.check(np.array_equal(text[:, 0].astype(np.uint64), keys), "text keys differ from npy")
    it.check(np.array_equal(text[:, 1:17].astype(np.float32), emb) and
             np.array_equal(text[:, 17].astype(np.float32), bias), "text values differ from npy")

    # Scores from the npy files in Python vs tessera recommend (with items seen in training
    # excluded), for a few users including one the export does not know.
    users = [int(u) for u in arrays["user"][0][:5]] + [10 ** 9]
    with open(ctx.path("users.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(str(u) for u in users) + "\n")
    res = it.run([ctx.tessera, "recommend", "--export", out, "--users", ctx.path("users.txt"),
                  "--k", 10, "--exclude-seen", train], 120)
    it.expect_exit(res, 0, "tessera recommend")
    got = {}
    for line in res.stdout.splitlines():
        user, rank, item, score = line.split("\t")
        got.setdefault(int(user), []).append((int(rank), int(item), float(score)))
    seen = {}
    with open(train, encoding="utf-8") as f:
        for line in f:
            u, i, _ = line.split()
            seen.setdefault(int(u), set()).add(int(i))
    ukeys, uemb, ubias = arrays["user"]
    ikeys, iemb, ibias = arrays["item"]
    for user in users:
        where = np.nonzero(ukeys == np.uint64(user))[0]
        p = uemb[where[0]].astype(np.float64) if len(where) else np.zeros(16)
        b = float(ubias[where[0]]) if len(where) else 0.0
        scores = mu + b + ibias.astype(np.float64) + iemb.astype(np.float64) @ p
        allowed = np.array([int(k) not in seen.get(user, ()) for k in ikeys])
        order = [i for i in np.lexsort((ikeys, -scores)) if allowed[i]][:10]
        want = [(r + 1, int(ikeys[i]), scores[i]) for r, i in enumerate(order)]
        have = got.get(user, [])
        it.check([w[:2] for w in want] == [h[:2] for h in have],
                 f"user {user}: tessera recommend {have} vs numpy {want}")
        it.check(all(abs(w[2] - h[2]) <= 1e-6 * max(1.0, abs(w[2])) for w, h in zip(want, have)),
                 f"user {user}: scores differ: {have} vs {want}")
    print(f"  recommend == numpy for {len(users)} users (top 10, seen items excluded)")

    # DeepFM: dense parameters and the layer shapes of model.json.
    out_dir = ctx.path("criteo")
    res = ctx.tessera_run(["gen", "criteo", "--rows", 6000, "--seed", 2, "--out", out_dir], 120)
    it.expect_exit(res, 0, "tessera gen criteo")
    ckpt = ctx.path("ckpt-ctr")
    res = ctx.tessera_run(["train", "--model", "deepfm", "--train",
                           os.path.join(out_dir, "train.tsv"), "--emb-dim", 8, "--mlp", "32,16",
                           "--batch-size", 512, "--epochs", 1, "--checkpoint-dir", ckpt], 300)
    it.expect_exit(res, 0, "DeepFM training with a checkpoint")
    out = ctx.path("export-ctr")
    res = ctx.tessera_run(["export", "--checkpoint", ckpt, "--out", out], 120)
    it.expect_exit(res, 0, "tessera export (deepfm)")
    with open(os.path.join(out, "model.json"), encoding="utf-8") as f:
        model = json.load(f)
    dense = np.load(os.path.join(out, model["dense_file"]))
    layers = model["model"]["layers"]
    it.check(dense.dtype == np.float32 and len(dense) == int(model["model"]["num_dense_params"]),
             f"dense.npy has {dense.shape} {dense.dtype}, model.json says "
             f"{model['model']['num_dense_params']}")
    end = 0
    for layer in layers:
        it.check(int(layer["offset"]) == end, f"layer {layer['name']} does not follow the last")
        end += int(np.prod([int(d) for d in layer["shape"]]))
    it.check(end == len(dense), f"layers cover {end} of {len(dense)} dense parameters")
    it.check(any(layer["shape"] == ["32", "16"] or layer["shape"] == [32, 16]
                 for layer in layers), f"no 32x16 MLP layer in {layers}")
    for t in model["tables"]:
        emb = np.load(os.path.join(out, t["embeddings_file"]))
        it.check(emb.shape == (int(t["num_rows"]), int(t["dim"])), f"{t['name']}: {emb.shape}")
    print(f"  deepfm export: {len(dense)} dense parameters in {len(layers)} blocks")


def full_disk_mode(ctx):
    """A checkpoint that hits a full disk ends the job with the reason; the previous one stays
    complete and usable."""
    setup = Setup(ctx, "mf")
    ckpt = ctx.path("ckpt")
    # A disk with room for two checkpoints of this job (about 0.7 MB each), not three: the
    # process's checkpoint writes fail with ENOSPC once 1700 kB are written (the test hook).
    env = ctx.env()
    env[FAULT_ENV] = "disk_bytes=1700000"
    res = it.run([ctx.tessera] + setup.run_args(ckpt, ctx.path("full.jsonl"), [
        "--servers", 2, "--workers", 2, "--checkpoint-every", setup.every]), 300, env=env)
    it.check(res.returncode not in (0, 2) and not res.timed_out,
             f"a full disk: exit {res.returncode}\n{res.tail()}")
    step = latest_step(ckpt)
    previous = os.path.join(ckpt, f"step-{step}")
    line = it.grep(r"^tessera: error: .*checkpoint of step \d+ failed .*No space left on "
                   r"device.*", res.stderr)
    it.check(line, f"no line with the reason\n{res.tail()}")
    it.check(step > 0 and "--resume " + previous in line.group(0),
             f"the line does not name the previous checkpoint {previous}: {line.group(0)}")
    print(f"  full disk: {line.group(0)[:160]}...")
    res = ctx.tessera_run(["export", "--checkpoint", previous, "--out", ctx.path("export")], 120)
    it.expect_exit(res, 0, "export of the checkpoint before the full disk")


MODES = {"kill": kill_mode, "full": full_disk_mode, "torn": torn_mode, "signals": signals_mode, "lost": lost_mode,
         "export": export_mode}


def add_args(p):
    p.add_argument("--mode", choices=sorted(MODES), required=True)
    p.add_argument("--model", choices=["mf", "deepfm"], default="mf")


if __name__ == "__main__":
    it.main(lambda ctx: MODES[ctx.args.mode](ctx), __doc__.splitlines()[0], add_args)
