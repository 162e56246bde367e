#!/usr/bin/env python3
"""Bad flags, config and data end the job with one clear message and exit status 2.

Default mode: in one process (malformed line, --skip-bad-lines, bad rating, unknown flag, bad
flag value, missing file, unknown config key, config honoured and overridden by a flag).
--mpi mode: a malformed line under mpirun makes mpirun exit non-zero in time, with the message.
"""

import tessera_it as it

RUN_LIMIT_S = 60
# Line 4 of the bad file: not a rating, and with a Latin-1 byte in it, which must not stop the
# error from arriving (protobuf carries only UTF-8: the reason is escaped on the way).
BAD_LINE = b"12 abc\xe9 3.5"


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def bad_train_file(ctx, good_train):
    """good_train's first lines with line 4 replaced by a malformed one (not UTF-8)."""
    with open(good_train, "rb") as f:
        lines = [next(f) for _ in range(200)]
    lines[3] = BAD_LINE + b"\n"
    path = ctx.path("bad_train.txt")
    with open(path, "wb") as f:
        f.write(b"".join(lines))
    return path


def error_lines(res):
    return [l for l in res.stderr.splitlines() if l.startswith("tessera: error:")]


def expect_error(res, what, *needles):
    """Exit status 2 and a `tessera: error:` line containing every needle."""
    it.expect_exit(res, 2, what)
    errors = error_lines(res)
    it.check(errors, f"{what}: no 'tessera: error:' line on stderr\n{res.tail()}")
    for needle in needles:
        it.check(any(needle in l for l in errors),
                 f"{what}: the error does not mention {needle!r}: {errors}")
    print(f"  {what}: exit 2, {errors[0]}")


def test_mpi(ctx, test, bad):
    args = ["train", "--train", bad, "--test", test, "--epochs", 1,
            "--timeout", 30, "--register-timeout", 30]
    res = ctx.mpirun(3, args, RUN_LIMIT_S)
    it.check(not res.timed_out, f"mpirun did not end within {RUN_LIMIT_S} s\n{res.tail()}")
    it.check(res.returncode != 0, f"mpirun exited 0 on a malformed file\n{res.tail()}")
    it.check(f"{bad}:4" in res.stderr, f"stderr does not name {bad}:4\n{res.tail()}")
    it.check("\\xe9" in res.stderr, f"stderr does not show the escaped byte \\xe9\n{res.tail()}")
    it.check(error_lines(res), f"no 'tessera: error:' line on stderr\n{res.tail()}")
    print(f"  mpirun: exit {res.returncode} after {res.seconds:.1f} s; {error_lines(res)[0]}")


def test(ctx):
    train, test_file, _ = ctx.gen_ratings("data", users=200, items=100, ratings=2000, seed=5)
    bad = bad_train_file(ctx, train)
    if ctx.args.mpi:
        test_mpi(ctx, test_file, bad)
        return
    run = ctx.tessera_run
    base = ["train", "--test", test_file, "--epochs", 1]

    res = run(base + ["--train", bad], RUN_LIMIT_S)
    expect_error(res, "malformed line 4", f"{bad}:4", "\\xe9")

    res = run(base + ["--train", bad, "--skip-bad-lines"], RUN_LIMIT_S)
    it.expect_exit(res, 0, "--skip-bad-lines")
    warning = it.grep(r"^(W |.*warning).*\bskip\w*\b.*\b1\b.*$", res.stderr) or \
        it.grep(r"^(W |.*warning).*\b1\b.*\bskip\w*\b.*$", res.stderr)
    it.check(warning, f"--skip-bad-lines: no warning with the count of skipped lines\n"
                      f"{res.tail()}")
    print(f"  --skip-bad-lines: exit 0, {warning.group(0)}")

    bad_rating = write(ctx.path("bad_rating.txt"), "1 2 x\n3 4 5\n5 6 2.5\n")
    res = run(["train", "--train", bad_rating, "--epochs", 1], RUN_LIMIT_S)
    expect_error(res, "non-numeric rating", f"{bad_rating}:1")

    res = run(["train", "--no-such-flag"], RUN_LIMIT_S)
    expect_error(res, "unknown flag", "no-such-flag")
    lines = res.stderr.strip().splitlines()
    it.check(len(lines) == 1, f"unknown flag: expected one line on stderr, got {len(lines)}:\n"
                              f"{res.stderr}")

    res = run(["train", "--dim", "abc"], RUN_LIMIT_S)
    expect_error(res, "--dim abc", "dim")

    missing = ctx.path("no_such_file.txt")
    res = run(["train", "--train", missing], RUN_LIMIT_S)
    expect_error(res, "missing --train file", missing)

    unknown_key = write(ctx.path("unknown_key.ini"), "[model]\ndim = 8\nno_such_key = 3\n")
    res = run(["train", "--config", unknown_key], RUN_LIMIT_S)
    expect_error(res, "config with an unknown key", "no_such_key")

    config = write(ctx.path("model.ini"), "# a model section\n[model]\ndim = 8\n")
    res = run(["train", "--config", config, "--train", train, "--test", test_file,
               "--epochs", 1], RUN_LIMIT_S)
    it.expect_exit(res, 0, "--config with dim = 8")
    it.check(it.grep(r"^\s*dim = 8\b", res.stderr),
             f"--config: the start-up summary does not list 'dim = 8'\n{res.tail(60)}")
    print("  --config [model] dim = 8: honoured")
    res = run(["train", "--config", config, "--dim", 12, "--train", train, "--test", test_file,
               "--epochs", 1], RUN_LIMIT_S)
    it.expect_exit(res, 0, "--config with dim = 8 and --dim 12")
    it.check(it.grep(r"^\s*dim = 12\b", res.stderr) and not it.grep(r"^\s*dim = 8\b", res.stderr),
             f"--dim 12 does not override the config's dim = 8\n{res.tail(60)}")
    print("  --dim 12 overrides the config's dim = 8")


def add_args(p):
    p.add_argument("--mpi", action="store_true", help="the malformed-line case under mpirun")


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
