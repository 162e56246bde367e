#!/usr/bin/env python3
"""Which device each worker takes, and the device errors (launch/device_assignment.h).

--mode errors (any build): `--device cuda` without a usable device and `--device cuda` with more
workers than devices end the job with exit status 2 and one line naming the reason or the counts;
`--device auto` without a device trains on the CPU and says so. On the emulated device the number
of devices comes from TESSERA_CUDA_EMU_DEVICES; a check that needs a device the build or machine
does not have is skipped (the script exits 77 when every check was). With --mpi: under mpirun,
`--device cuda` on 2 workers with one device (or none) ends the job with exit status 2 and one
line, the first failing worker's.

--mode workers (a device per worker: the emulated device with TESSERA_CUDA_EMU_DEVICES=2, or a
2-GPU machine): 2 workers in one process, then under mpirun with --mpi (1 scheduler, 1 server, 2
workers), train MF with --device cuda; worker i names cuda:i in its start-up line (with --devices
1,0 in one process, the reverse), and the job ends with exit status 0.
"""

import re

import tessera_it as it

RUN_LIMIT_S = 120
NO_DEVICE = "no usable CUDA device"


def error_lines(res):
    return [l for l in res.stderr.splitlines() if l.startswith("tessera: error:")]


def run(ctx, args, devices, limit=RUN_LIMIT_S):
    """tessera ARGS with TESSERA_CUDA_EMU_DEVICES=devices (ignored by the real CUDA runtime)."""
    env = ctx.env()
    env["TESSERA_CUDA_EMU_DEVICES"] = str(devices)
    return it.run([ctx.tessera] + [str(a) for a in args], limit, env=env)


def expect_one_error(res, what, needle):
    it.expect_exit(res, 2, what)
    errors = error_lines(res)
    it.check(len(errors) == 1, f"{what}: expected one 'tessera: error:' line, got {errors}\n"
                               f"{res.tail()}")
    it.check(needle in errors[0], f"{what}: the error does not say {needle!r}: {errors[0]}")
    print(f"  {what}: exit 2, {errors[0]}")


def device_lines(res):
    """{worker rank: the device named in its start-up line}."""
    found = {}
    for m in re.finditer(r"worker:(\d+) \S+\] computes on (\S+)", res.stderr):
        found[int(m.group(1))] = m.group(2)
    return found


def test_errors(ctx, train):
    base = ["train", "--train", train, "--epochs", 1, "--register-timeout", 30]
    ran = 0

    res = run(ctx, base + ["--device", "cuda"], devices=0)
    if NO_DEVICE in res.stderr:
        expect_one_error(res, "--device cuda without a device", f"--device cuda: {NO_DEVICE}")
        ran += 1
        res = run(ctx, base + ["--device", "auto"], devices=0)
        it.expect_exit(res, 0, "--device auto without a device")
        line = it.grep(r"computes on cpu .*--device auto chose cpu \(" + NO_DEVICE + r".*$",
                       res.stderr)
        it.check(line, f"--device auto: no line saying it chose cpu\n{res.tail()}")
        print(f"  --device auto without a device: {line.group(0)}")
    else:
        print("  skipped the no-device checks: this machine has a usable CUDA device")

    # --devices 0 limits the workers to one device on any machine that has one.
    res = run(ctx, base + ["--device", "cuda", "--workers", 2, "--devices", 0], devices=1)
    if NO_DEVICE in res.stderr:
        print("  skipped the more-workers-than-devices check: no usable CUDA device")
    else:
        expect_one_error(res, "2 workers, --devices 0",
                         "2 workers on this host but only 1 CUDA device (--devices 0)")
        res = run(ctx, base + ["--device", "cuda", "--workers", 2], devices=1)
        if "computes on" not in res.stderr:  # the emulated device, or a 1-GPU machine
            expect_one_error(res, "2 workers, 1 device",
                             "2 workers on this host but only 1 CUDA device")
        ran += 1
    if ran == 0:
        raise it.Skip("no check could run here")


def test_errors_mpi(ctx, train):
    """Under mpirun a device error of the workers ends the job with one line, whichever it is."""
    it.check(ctx.mpiexec, "no mpirun found (pass --mpiexec)")
    env = ctx.env()
    env.update(it.MPI_ENV)
    env["TESSERA_CUDA_EMU_DEVICES"] = "1"
    args = ["train", "--train", train, "--epochs", 1, "--device", "cuda", "--devices", 0]
    res = it.run([ctx.mpiexec, "-np", 4, ctx.tessera] + args, RUN_LIMIT_S, env=env)
    it.check(not res.timed_out, f"mpirun did not end within {RUN_LIMIT_S} s\n{res.tail()}")
    it.check(res.returncode == 2, f"mpirun exited {res.returncode}, expected 2\n{res.tail()}")
    errors = error_lines(res)
    it.check(len(errors) == 1, f"expected one 'tessera: error:' line, got {errors}\n{res.tail()}")
    it.check(NO_DEVICE in errors[0] or
             "2 workers on this host but only 1 CUDA device (--devices 0)" in errors[0],
             f"the error names neither the missing device nor the counts: {errors[0]}")
    print(f"  mpirun, 2 workers, --devices 0: exit 2 after {res.seconds:.1f} s, {errors[0]}")


def expect_devices(res, what, expected):
    it.expect_exit(res, 0, what)
    found = device_lines(res)
    for rank, device in expected.items():
        it.check(found.get(rank) == device,
                 f"{what}: worker {rank} computes on {found.get(rank)}, expected {device}\n"
                 f"{res.tail(40)}")
    print(f"  {what}: {found}")


def test_workers(ctx, train, test):
    args = ["train", "--train", train, "--test", test, "--epochs", 1, "--device", "cuda",
            "--register-timeout", 60]
    probe = run(ctx, args + ["--workers", 2], devices=2, limit=300)
    if NO_DEVICE in probe.stderr or "only 1 CUDA device" in probe.stderr:
        raise it.Skip("needs 2 usable CUDA devices: " + (error_lines(probe) or ["?"])[0])
    if not ctx.args.mpi:
        expect_devices(probe, "2 workers in one process", {0: "cuda:0", 1: "cuda:1"})
        res = run(ctx, args + ["--workers", 2, "--devices", "1,0"], devices=2, limit=300)
        expect_devices(res, "--devices 1,0", {0: "cuda:1", 1: "cuda:0"})
        return
    it.check(ctx.mpiexec, "no mpirun found (pass --mpiexec)")
    env = ctx.env()
    env.update(it.MPI_ENV)
    env["TESSERA_CUDA_EMU_DEVICES"] = "2"
    # The scheduler and the server share the host but take no device: the workers get 0 and 1.
    res = it.run([ctx.mpiexec, "-np", 4, ctx.tessera] + args, 300, env=env)
    expect_devices(res, "mpirun, 2 workers", {0: "cuda:0", 1: "cuda:1"})


def test(ctx):
    train, test_file, _ = ctx.gen_ratings("data", users=200, items=100, ratings=4000, seed=5)
    if ctx.args.mode == "errors" and ctx.args.mpi:
        test_errors_mpi(ctx, train)
    elif ctx.args.mode == "errors":
        test_errors(ctx, train)
    else:
        test_workers(ctx, train, test_file)


def add_args(p):
    p.add_argument("--mode", choices=["errors", "workers"], required=True)
    p.add_argument("--mpi", action="store_true", help="under mpirun")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
