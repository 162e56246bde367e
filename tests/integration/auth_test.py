#!/usr/bin/env python3
"""Authentication on the wire (issue 14, point 1).

--mode keys: `tessera keygen` writes a 0600 file and never replaces one; --auth-key refuses a
file readable by group or others or not in the key format (exit 2, the file named); --insecure
and --auth-key exclude each other; one process over ZeroMQ trains with --auth-key, with a
per-job secret and with --insecure, and the three give the same metrics bit for bit.

--mode stranger (mpirun): a quiet `mpirun -np 4 ... --deterministic` run is the reference. The
same job with --auth-key, and with --insecure, gives the same metrics. Then the job runs again
while tessera_stranger (tests/tools/stranger.cc: not a member, no key) floods every
port the job listens on (found as any user of the host could: tests/integration/job_ports.py)
with forged PUSHes (worker:0, NaN gradients), forged ABORTs, forged shared-frame descriptors and
garbage, from the moment the ports appear until the job ends: it exits 0 with metrics equal to
the quiet run's. Before authentication the forged ABORT ended the job.
"""

import os
import re
import stat
import subprocess
import time

import job_ports
import tessera_it as it

SEED = 7
RANKS = 4  # scheduler, 1 server, 2 workers


def data_args(ctx):
    train, test, _ = ctx.gen_ratings("data", users=3000, items=800, ratings=150000, seed=11)
    return ["--train", train, "--test", test, "--deterministic", "--seed", SEED,
            "--epochs", 4, "--servers", 1]


def write_key(ctx, name):
    path = ctx.path(name)
    res = ctx.tessera_run(["keygen", "--out", path], 60)
    it.expect_exit(res, 0, "tessera keygen")
    return path


def test_keys(ctx):
    key = write_key(ctx, "job.key")
    mode = stat.S_IMODE(os.stat(key).st_mode)
    it.check(mode == 0o600, f"keygen wrote mode {mode:o}, expected 600")
    with open(key, encoding="ascii") as f:
        text = f.read()
    it.check(text.startswith("tessera-job-key-1 ") and len(text) == 18 + 64 + 1,
             f"unexpected key file contents (length {len(text)})")
    again = ctx.tessera_run(["keygen", "--out", key], 60)
    it.expect_exit(again, 2, "keygen over an existing file")
    it.check("exists" in again.stderr and key in again.stderr, again.tail())
    with open(key, encoding="ascii") as f:
        it.check(f.read() == text, "keygen changed an existing file")

    args = data_args(ctx)
    args[args.index("--epochs") + 1] = 1
    zmq = args + ["--transport", "zmq", "--workers", 2]
    loose = ctx.path("loose.key")
    with open(key, encoding="ascii") as src, open(loose, "w", encoding="ascii") as dst:
        dst.write(src.read())
    os.chmod(loose, 0o644)
    res = ctx.tessera_run(["train", "--auth-key", loose] + zmq, 120)
    it.expect_exit(res, 2, "--auth-key on a 0644 file")
    it.check("chmod 600" in res.stderr and loose in res.stderr, res.tail())
    bad = ctx.path("bad.key")
    with open(bad, "w", encoding="ascii") as f:
        f.write("not a key\n")
    os.chmod(bad, 0o600)
    res = ctx.tessera_run(["train", "--auth-key", bad] + zmq, 120)
    it.expect_exit(res, 2, "--auth-key on a file of the wrong format")
    it.check("not a Tessera key file" in res.stderr and bad in res.stderr, res.tail())
    res = ctx.tessera_run(["train", "--auth-key", key, "--insecure"] + zmq, 120)
    it.expect_exit(res, 2, "--auth-key with --insecure")

    ref, _ = ctx.train("zmq, per-job secret", zmq)
    for name, extra in (("zmq, --auth-key", ["--auth-key", key]), ("zmq, --insecure",
                                                                   ["--insecure"])):
        records, _ = ctx.train(name, zmq + extra)
        it.check(it.model_series(records) == it.model_series(ref),
                 f"run '{name}' differs from the run with a per-job secret")
        print(f"  '{name}' is bit-identical to the run with a per-job secret")


def attacked_run(ctx, args, stranger):
    """Runs the job under mpirun while tessera_stranger attacks its ports; returns its records."""
    metrics = ctx.path("metrics-attacked.jsonl")
    full = ["train"] + [str(a) for a in args] + ["--metrics-out", metrics, "--timeout", "120",
                                                 "--register-timeout", "60"]
    env = dict(os.environ)
    env.update(ctx.env())
    env.update(it.MPI_ENV)
    cmd = ["timeout", "-k", "5", "300", ctx.mpiexec, "-np", str(RANKS), ctx.tessera] + full
    print(f"$ {' '.join(cmd)}  (attacked)", flush=True)
    job = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, start_new_session=True, text=True,
                           errors="replace")
    attacker = None
    try:
        ports, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline and job.poll() is None:
            pids = job_ports.tessera_pids(ctx.tessera, metrics)
            ports = sorted(job_ports.zmtp_ports(pids))
            if len(pids) == RANKS and len(ports) >= RANKS:
                break
            time.sleep(0.05)
        it.check(job.poll() is None, "the job ended before its ports could be found")
        it.check(len(ports) >= RANKS, f"found ports {ports} of the {RANKS} ranks, expected one each")
        print(f"  attacking ports {ports} of pids {pids}", flush=True)
        attacker = subprocess.Popen([stranger, "--ports", ",".join(map(str, ports)), "--seconds",
                                     "280"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
        stdout, stderr = job.communicate(timeout=320)
        it.check(attacker.poll() is None, "the stranger stopped before the job ended")
    finally:
        for proc in (job, attacker):
            if proc is not None and proc.poll() is None:
                it._kill_group(proc.pid)  # pylint: disable=protected-access
                proc.wait()
    res = it.Result(cmd, job.returncode, stdout, stderr, 0)
    it.expect_exit(res, 0, "the attacked job")
    it.check("forged abort" not in stderr, "a forged ABORT reached a log:\n" + res.tail())
    # The ranks saw the stranger: each transport sums up what it refused when it stops.
    refusals = [line for line in stderr.splitlines() if "failed handshake(s)" in line]
    for line in refusals:
        print("  " + line)
    it.check(any(re.search(r"refused \d+ connection\(s\)[^,]*, [1-9]\d* failed", line)
                 for line in refusals), "no rank reports refusing the stranger's handshakes")
    return it.read_metrics(metrics)


def test_stranger(ctx):
    stranger = ctx.args.stranger
    it.check(os.access(stranger, os.X_OK), f"no stranger tool at {stranger}")
    args = data_args(ctx)
    ref, res = ctx.train("quiet", args, mpi_ranks=RANKS)
    print(f"  quiet run: {res.seconds:.1f} s")
    key = write_key(ctx, "job.key")
    for name, extra in (("--auth-key", ["--auth-key", key]), ("--insecure", ["--insecure"])):
        records, _ = ctx.train(name, args + extra, mpi_ranks=RANKS)
        it.check(it.model_series(records) == it.model_series(ref),
                 f"mpirun with {name} differs from the quiet run")
        print(f"  mpirun with {name} is bit-identical to the quiet run")
    records = attacked_run(ctx, args, stranger)
    series, want = it.model_series(records), it.model_series(ref)
    it.check(len(want) > 0 and series == want,
             f"the attacked job's metrics differ from the quiet run's:\n{series}\n{want}")
    print(f"  the attacked job is bit-identical to the quiet run ({len(series)} numbers)")


def test(ctx):
    if ctx.args.mode == "keys":
        test_keys(ctx)
    else:
        test_stranger(ctx)


def add_args(p):
    p.add_argument("--mode", choices=["keys", "stranger"], required=True)
    p.add_argument("--stranger", default="", help="path of tessera_stranger")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
