"""Shared helpers of Tessera's integration tests (Python 3 standard library only).

Each test script is registered in CMakeLists.txt as
    python3 SCRIPT --tessera $<TARGET_FILE:tessera> [--mpiexec MPIEXEC] [script options]
and reports through its exit status: 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).

Every child process runs under `timeout -k 5 N` in its own process group, and the whole group is
killed if the test gives up waiting, so a hung `tessera` or `mpirun` never outlives its test.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77

# Open MPI settings for running as root with more ranks than cores; yield_when_idle keeps
# oversubscribed ranks from busy-polling each other off the CPU.
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_mpi_yield_when_idle": "1",
}

# Metrics that measure speed, not the model: they differ between identical runs.
TIMING_KEYS = ("samples_per_sec", "train_seconds")


class TestFailure(Exception):
    """A failed expectation; its message is printed and the test exits with status 1."""


class Skip(Exception):
    """The test cannot run here (e.g. shared data absent); exits with SKIP."""


def check(condition, message):
    if not condition:
        raise TestFailure(message)


class Result:
    """What a finished child process left behind."""

    def __init__(self, cmd, returncode, stdout, stderr, seconds):
        self.cmd = cmd
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    @property
    def timed_out(self):
        # 124: `timeout` sent SIGTERM; 137 (128 + 9): it had to SIGKILL; -9: we did.
        return self.returncode in (124, 137, -signal.SIGKILL)

    def tail(self, lines=30):
        """The last lines of stderr and stdout, for failure messages."""
        out = []
        for name, text in (("stderr", self.stderr), ("stdout", self.stdout)):
            kept = text.rstrip("\n").splitlines()[-lines:]
            if kept:
                out.append(f"--- {name} (last {len(kept)} lines) ---")
                out.extend(kept)
        return "\n".join(out)


def run(cmd, timeout_s, env=None, cwd=None):
    """Runs cmd (a list) with a hard time limit and returns a Result; never raises on failure."""
    cmd = [str(c) for c in cmd]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    wrapped = ["timeout", "-k", "5", str(timeout_s)] + cmd
    print(f"$ {' '.join(cmd)}   (limit {timeout_s} s)", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(wrapped, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=full_env, cwd=cwd,
                            start_new_session=True, text=True, errors="replace")
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s + 15)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stdout, stderr = proc.communicate()
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    seconds = time.monotonic() - start
    print(f"  -> exit {proc.returncode} after {seconds:.1f} s", flush=True)
    return Result(cmd, proc.returncode, stdout, stderr, seconds)


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Context:
    """Paths and tools of one test run; use as a context manager to get a scratch directory."""

    def __init__(self, args):
        self.tessera = os.path.abspath(args.tessera)
        self.mpiexec = args.mpiexec or shutil.which("mpirun") or shutil.which("mpiexec")
        self.args = args
        self.tmp = None

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="tessera-it-")
        return self

    def __exit__(self, *exc):
        if os.environ.get("TESSERA_IT_KEEP") == "1":
            print(f"kept scratch directory {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def env(self):
        # The embedded default writes its generated data under TMPDIR: keep it in our scratch dir.
        return {"TMPDIR": self.tmp}

    def tessera_run(self, args, timeout_s):
        return run([self.tessera] + list(args), timeout_s, env=self.env())

    def mpirun(self, num_ranks, args, timeout_s):
        """Runs `mpirun -np num_ranks tessera ARGS` (as root, oversubscribed)."""
        check(self.mpiexec, "no mpirun found (pass --mpiexec)")
        env = self.env()
        env.update(MPI_ENV)
        cmd = [self.mpiexec, "-np", str(num_ranks), self.tessera] + list(args)
        return run(cmd, timeout_s, env=env)

    def gen_ratings(self, name, users, items, ratings, rank=8, noise=0.5, seed=1, timeout_s=120):
        """`tessera gen ratings` into SCRATCH/name; returns (train, test, truth dict)."""
        out = self.path(name)
        res = self.tessera_run(["gen", "ratings", "--users", users, "--items", items,
                                "--ratings", ratings, "--rank", rank, "--noise", noise,
                                "--seed", seed, "--out", out], timeout_s)
        expect_exit(res, 0, "tessera gen ratings")
        with open(os.path.join(out, "truth.json"), encoding="utf-8") as f:
            truth = json.load(f)
        return os.path.join(out, "train.txt"), os.path.join(out, "test.txt"), truth

    def gen_criteo(self, name, rows, seed, extra=(), timeout_s=300):
        """`tessera gen criteo` into SCRATCH/name; returns (train, test, truth dict)."""
        out = self.path(name)
        res = self.tessera_run(["gen", "criteo", "--rows", rows, "--seed", seed, "--out", out] +
                               list(extra), timeout_s)
        expect_exit(res, 0, "tessera gen criteo")
        with open(os.path.join(out, "truth.json"), encoding="utf-8") as f:
            truth = json.load(f)
        return os.path.join(out, "train.tsv"), os.path.join(out, "test.tsv"), truth

    def train(self, name, args, mpi_ranks=None, timeout_s=600):
        """`tessera train ARGS` (under mpirun with mpi_ranks), which must exit 0; returns its
        --metrics-out records and its Result."""
        slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
        metrics = self.path(f"metrics-{slug}.jsonl")
        full = ["train"] + [str(a) for a in args] + ["--metrics-out", metrics]
        if mpi_ranks:
            res = self.mpirun(mpi_ranks, full + ["--timeout", "120", "--register-timeout", "60"],
                              timeout_s)
        else:
            res = self.tessera_run(full, timeout_s)
        expect_exit(res, 0, f"run '{name}'")
        return read_metrics(metrics), res


def expect_exit(res, status, what):
    check(not res.timed_out,
          f"{what}: did not finish within its limit (exit {res.returncode})\n{res.tail()}")
    check(res.returncode == status,
          f"{what}: exit status {res.returncode}, expected {status}\n{res.tail()}")


def read_metrics(path):
    """The JSON lines of a --metrics-out file, with every number kept as its exact text."""
    check(os.path.exists(path), f"no metrics file {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line, parse_float=str, parse_int=str))
            except json.JSONDecodeError as e:
                raise TestFailure(f"{path}:{number}: not JSON ({e}): {line!r}") from e
    return records


def model_series(records):
    """(event, epoch, key, text) for every number that depends on the model, in file order."""
    series = []
    for r in records:
        for key, value in r.items():
            if key in ("event", "epoch", "split") or key in TIMING_KEYS:
                continue
            series.append((r.get("event"), r.get("epoch"), key, value))
    return series


def expect_same_series(name, records, reference, against="the reference"):
    """Run `name`'s model numbers are bit-identical to the reference's."""
    got, want = model_series(records), model_series(reference)
    check(got == want, f"'{name}' differs from {against}:\n{got}\n{want}")
    print(f"  '{name}': {len(got)} numbers bit-identical to {against}")


def expect_resumed_suffix(name, records, reference):
    """A resumed run's model numbers are the uninterrupted reference's from the epoch it resumed
    in on, bit for bit."""
    first = min(int(r["epoch"]) for r in records if "epoch" in r)
    kept = [r for r in reference if r.get("event") == "done" or int(r.get("epoch", "0")) >= first]
    got, want = model_series(records), model_series(kept)
    check(got and want[len(want) - len(got):] == got,
          f"'{name}' differs from the uninterrupted run:\nresumed {got}\nreference {want}")
    print(f"  '{name}': resumed in epoch {first}, {len(got)} numbers bit-identical")


def early_stop_epoch(values, patience):
    """The epoch (1-based) at which the training loop's early-stopping rule ends a run whose
    validation metric (lower is better) took `values` after epochs 1, 2, ...; None when it never
    fires. Better means by more than 0.05 %; the run ends once `patience` epochs in a row were
    not better."""
    best, since = None, 0
    for epoch, value in enumerate(values, 1):
        if best is None or value < best - 5e-4 * abs(best):
            best, since = value, 0
        else:
            since += 1
        if since >= patience:
            return epoch
    return None


def final_rmse(records):
    done = [r for r in records if r.get("event") == "done"]
    check(done, "metrics have no 'done' record")
    check(done[-1].get("rmse") not in (None, "null"), f"'done' record has no rmse: {done[-1]}")
    return float(done[-1]["rmse"])


def expect_close_rmse(what, records, other, other_records, limit):
    """The final test RMSE of `what` within `limit` (a fraction) of `other`'s."""
    got, want = final_rmse(records), final_rmse(other_records)
    gap = abs(got - want) / want
    print(f"  final test RMSE: {what} {got:.6f}, {other} {want:.6f} ({100 * gap:.3f}% apart)")
    check(gap <= limit, f"{what} reaches test RMSE {got}, {other} {want}: {100 * gap:.2f}% apart, "
                        f"more than {100 * limit:g}%")


def shared_data_dir():
    """$TESSERA_SHARED_DATA, or raises Skip when it is unset or missing."""
    path = os.environ.get("TESSERA_SHARED_DATA", "")
    if not path or not os.path.isdir(path):
        raise Skip(f"shared test data not found (TESSERA_SHARED_DATA={path!r})")
    return path


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tessera", required=True, help="path of the tessera binary")
    p.add_argument("--mpiexec", default="", help="mpirun to use (default: mpirun on PATH)")
    return p


def main(test, description, add_args=None):
    """Parses arguments, runs test(ctx) in a scratch directory, exits 0 / 1 / SKIP."""
    p = parser(description)
    if add_args:
        add_args(p)
    args = p.parse_args()
    start = time.monotonic()
    try:
        with Context(args) as ctx:
            test(ctx)
    except Skip as e:
        print(f"SKIP: {e}")
        sys.exit(SKIP)
    except TestFailure as e:
        print(f"FAIL: {e}")
        sys.exit(1)
    except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        print("FAIL: unexpected error")
        sys.exit(1)
    print(f"PASS ({time.monotonic() - start:.1f} s)")
    sys.exit(0)


def grep(pattern, text):
    """The first match of a multi-line regex in text, or None."""
    return re.search(pattern, text, re.MULTILINE)


@contextlib.contextmanager
def env_set(name, value):
    """Sets the environment variable `name` (unset before: checked) for the body's processes."""
    check(name not in os.environ, f"{name} is set already")
    os.environ[name] = value
    try:
        yield
    finally:
        del os.environ[name]
