#!/usr/bin/env python3
"""Soak: a job trains while a stranger floods its ports and ends as a quiet run, in flat memory.

A --deterministic job of 1 scheduler, 2 servers and 4 workers runs under mpirun. Once every rank
is up, the test finds the job's ZeroMQ ports (the listening TCP sockets owned by the ranks:
socket inodes of /proc/PID/fd matched against /proc/net/tcp, kept when they send a ZMTP
signature on connect) and starts tessera_stranger (tests/tools/stranger.cc) on them until
the job ends: random bytes over raw TCP, random multipart ZMTP messages and well-formed forged
Tessera messages (headers claiming worker:0, a server or the scheduler; PUSH with any clock and
huge or NaN gradients, forged replies, ABORT, SIGNAL, SHUTDOWN, CHECKPOINT, RELEASE, shared-frame
descriptors naming the ranks' own memfds), half over NULL, half over CURVE with a key that
is not the job's; half of its connections claim a node's routing id (worker:0, scheduler:0).
The job must exit 0 with metrics bit-identical to those of a quiet run of the same configuration
(in one process: --deterministic runs are bit-identical across transports and launchers,
determinism_test.py), and the resident memory (VmRSS of /proc/PID/status, sampled every SAMPLE_S
while the job trains; its exit pages in ~50 MiB of library code, flood or not) of every rank and
of mpirun must stay flat: the largest sample of the last third at most RSS_BOUND_MIB above the
largest of the first third (tables, connections and allocator pools are in place by then).

Options: --model mf|deepfm, --epochs N (the length of the soak), --rate R (stranger messages per
second; 0: no stranger, to measure a quiet job), --curve/--raw/--forged/--node-ids/--forge (the
mix of the flood), --seed N. The stranger's seed is printed; TESSERA_IT_SEED picks another.
"""

import os
import subprocess
import time

import job_ports
import recovery_test
import tessera_it as it

SOAK_SEED = 20261206
SERVERS, WORKERS = 2, 4
MF_DATA = dict(users=3000, items=1000, ratings=60000)
MF_ARGS = ["--batch-size", 256, "--deterministic", "--seed", 3]
CTR_ARGS = ["--model", "deepfm", "--emb-dim", 8, "--mlp", "32,16", "--batch-size", 256,
            "--eval-every", 0, "--deterministic", "--seed", 5]
SAMPLE_S = 0.2
# The bound on resident-memory growth from the first third of the run to the last. Measured here
# (docs/RELIABILITY.md): a quiet job +0.06 MiB per rank, under raw TCP garbage or ZMTP garbage
# from unique routing ids +0.3..0.9 MiB; messages a rank receives but never reads (a connection
# whose routing id duplicates a peer's) retain ~18 KiB each, so retaining even 1 % of the ~10^4
# messages of a CI soak exceeds the bound.
RSS_BOUND_MIB = 4


def vm_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def training_done(metrics):
    """True once worker 0 has written the final ('done') record to its --metrics-out."""
    try:
        with open(metrics, "rb") as f:
            f.seek(max(0, os.path.getsize(metrics) - 512))
            return b'"event":"done"' in f.read()
    except OSError:
        return False


def rss_growth(samples):
    """{name: (first-third max, last-third max, growth) in KiB} of {name: [kib, ...]}."""
    out = {}
    for name, values in samples.items():
        third = len(values) // 3
        if third < 3:
            continue
        first, last = max(values[:third]), max(values[-third:])
        out[name] = (first, last, last - first)
    return out


def job_args(ctx, model, epochs):
    if model == "mf":
        train, test, _ = ctx.gen_ratings("data", **MF_DATA)
        return ["train", "--train", train, "--test", test, "--epochs", epochs] + MF_ARGS
    out = ctx.path("data")
    res = ctx.tessera_run(["gen", "criteo", "--rows", 12000, "--seed", 5, "--out", out], 300)
    it.expect_exit(res, 0, "tessera gen criteo")
    return ["train", "--train", os.path.join(out, "train.tsv"), "--test",
            os.path.join(out, "test.tsv"), "--epochs", epochs] + CTR_ARGS


def test(ctx):
    a = ctx.args
    it.check(os.access(a.stranger, os.X_OK), f"no stranger program at {a.stranger}")
    seed = int(os.environ.get("TESSERA_IT_SEED", str(a.seed)))
    args = job_args(ctx, a.model, a.epochs)

    # The quiet run: one process, same configuration.
    quiet = ctx.path("quiet.jsonl")
    res = ctx.tessera_run(args + ["--servers", SERVERS, "--workers", WORKERS, "--metrics-out",
                                  quiet], 600)
    it.expect_exit(res, 0, "the quiet run")
    steps = it.grep(r"x (\d+) steps/epoch", res.stderr)
    it.check(steps, f"no steps/epoch in the log\n{res.tail()}")
    total_steps = int(steps.group(1)) * a.epochs
    print(f"  quiet run: {total_steps} steps in {res.seconds:.1f} s")

    # The soak: the same job under mpirun, the stranger on its ports.
    metrics = ctx.path("soak.jsonl")
    cmd = [ctx.mpiexec, "-np", 1 + SERVERS + WORKERS, ctx.tessera] + args + [
        "--servers", SERVERS, "--metrics-out", metrics, "--timeout", 120, "--register-timeout",
        60, "--heartbeat-timeout", 10]
    stranger = None
    samples = {}
    with recovery_test.Job(ctx, cmd, "soak", mpi=True) as job:
        try:
            pids = recovery_test.wait_for(
                f"all {1 + SERVERS + WORKERS} ranks",
                lambda: (lambda p: p if len(p) == 1 + SERVERS + WORKERS else None)(
                    recovery_test.rank_pids(metrics)), job, 60)
            # Every rank binds its ROUTER before the endpoints are exchanged over MPI.
            ports = recovery_test.wait_for(
                "a ZeroMQ port of every rank",
                lambda: (lambda p: p if {pid for pid, _ in p.values()} >= set(pids.values())
                         else None)(job_ports.zmtp_ports(pids.values())), job, 60)
            names = {pid: f"rank {rank}" for rank, pid in pids.items()}
            names[job.proc.pid] = "mpirun"
            print("  ZeroMQ ports: " + ", ".join(f"{host}:{p} ({names[pid]})"
                                                  for p, (pid, host) in sorted(ports.items())))
            stranger_cmd = [a.stranger, "--seconds", 3600, "--seed", seed, "--rate", a.rate,
                            "--max-clock", total_steps, "--curve", a.curve, "--raw", a.raw,
                            "--forged", a.forged, "--node-ids", a.node_ids, "--pids",
                            ",".join(str(p) for p in pids.values())]
            if a.forge:
                stranger_cmd += ["--forge", a.forge]
            for port, (_, host) in sorted(ports.items()):
                stranger_cmd += ["--endpoint", f"tcp://{host}:{port}"]
            stranger_cmd = [str(c) for c in stranger_cmd]
            if a.rate > 0:  # --rate 0: no stranger, to measure a quiet job's memory
                print(f"$ {' '.join(stranger_cmd)}   (background: stranger, seed {seed})",
                      flush=True)
                stranger = subprocess.Popen(stranger_cmd, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            text=True, start_new_session=True)
            deadline = time.monotonic() + a.limit
            # Sampled while the job trains: at exit every rank pages in its libraries' teardown
            # code (VmRSS +50 MiB of RssFile in a few hundred ms, quiet or not).
            while (job.proc.poll() is None and time.monotonic() < deadline and
                   not training_done(metrics)):
                for pid, name in names.items():
                    kib = vm_rss_kib(pid)
                    if kib is not None:
                        samples.setdefault(name, []).append(kib)
                time.sleep(SAMPLE_S)
            status = job.wait(max(5, deadline - time.monotonic()))
        finally:
            stranger_out = ""
            if stranger is not None:
                stranger.terminate()
                try:
                    stranger_out, _ = stranger.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    stranger.kill()
                    stranger_out, _ = stranger.communicate()
        text = job.text()
    print(f"  {stranger_out.strip()}")
    if stranger is not None:
        it.check(stranger.returncode == 0,
                 f"the stranger failed (exit {stranger.returncode}): {stranger_out}")
    it.check(status == 0, f"the job under the stranger's flood exited {status} (seed {seed})\n"
                          f"{text[-4000:]}")
    got = it.model_series(it.read_metrics(metrics))
    want = it.model_series(it.read_metrics(quiet))
    diff = [(g, w) for g, w in zip(got, want) if g != w][:5]
    it.check(got == want, f"the metrics under the flood differ from the quiet run's (seed "
                          f"{seed}): first differences (flood, quiet) {diff}, "
                          f"{len(got)} vs {len(want)} numbers")
    print(f"  metrics under the flood: {len(got)} numbers bit-identical to the quiet run")
    growth = rss_growth(samples)
    it.check(len(growth) == 2 + SERVERS + WORKERS,
             f"too few memory samples: {[(n, len(v)) for n, v in samples.items()]}")
    for name, (first, last, grew) in sorted(growth.items()):
        print(f"  {name}: VmRSS first third max {first / 1024:.1f} MiB, last third max "
              f"{last / 1024:.1f} MiB, growth {grew / 1024:+.2f} MiB")
    worst = max(growth.items(), key=lambda kv: kv[1][2])
    it.check(worst[1][2] <= RSS_BOUND_MIB * 1024,
             f"resident memory of {worst[0]} grew by {worst[1][2] / 1024:.2f} MiB from the first "
             f"third of the run to the last (bound {RSS_BOUND_MIB} MiB, seed {seed})")
    print(f"  largest growth {worst[1][2] / 1024:+.2f} MiB ({worst[0]}, "
          f"{len(samples[worst[0]])} samples), bound {RSS_BOUND_MIB} MiB")


def add_args(p):
    p.add_argument("--stranger", required=True, help="path of tessera_stranger")
    p.add_argument("--model", choices=["mf", "deepfm"], default="mf")
    p.add_argument("--epochs", type=int, default=150, help="length of the soak")
    p.add_argument("--rate", type=float, default=1000, help="stranger messages per second")
    p.add_argument("--curve", type=float, default=0.5,
                   help="fraction of the stranger's connections that use CURVE")
    p.add_argument("--raw", type=float, default=0.1,
                   help="fraction of the stranger's attempts that are raw TCP garbage")
    p.add_argument("--forged", type=float, default=0.6,
                   help="fraction of its messages that are forged Tessera messages")
    p.add_argument("--node-ids", type=float, default=0.5,
                   help="fraction of its connections whose routing id names a node (worker:0)")
    p.add_argument("--forge", default="",
                   help="kinds of forged message (tools/stranger.cc --forge; default: all)")
    p.add_argument("--seed", type=int, default=SOAK_SEED)
    p.add_argument("--limit", type=int, default=600, help="seconds the soaked job may take")


if __name__ == "__main__":
    it.main(test, __doc__.splitlines()[0], add_args)
