#!/usr/bin/env python3
"""Time to a good model with MF's default flags, next to the ceiling (issue 15, point 3's target).

    bench/run_mf_defaults.py [BUILD_DIR]        (default BUILD_DIR: <repo>/build-bench)

1. generates issue 15's planted set once (`tessera gen ratings --users 100000 --items 20000
   --ratings 10000000 --rank 16 --noise 0.5 --seed 2`) into $BENCH_DIR/planted;
2. `tessera_bench ceiling-grid` gives the ceiling's best test RMSE over lr {0.05, 0.1} x l2
   {0.02, 0.05} (30 epochs each, as the defaults test does); the target is 1 % above it;
3. REPS times, alternating: the ceiling (FPSGD, 2 threads) at lr 0.05 and at lr 0.1 (l2 0.02), and
   `tessera train --train --test` with no tuning flag. The ceiling's time to the target is the
   `elapsed_sec` of its first epoch at or below it (seconds since it began reading the files),
   the faster of its two learning rates; Tessera's is the time from the process's launch to the
   log line of its first epoch at or below it. Both include reading the files.
4. prints, per rep, both times and their ratio (target: Tessera at most 2x), Tessera's final test
   RMSE and epochs; writes the summary to $OUT/summary.txt.

Environment: BENCH_DIR (default /tmp/tessera-bench), REPS (2), CEILING_EPOCHS (30).
"""

import datetime
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build-bench")
BENCH_DIR = os.environ.get("BENCH_DIR", "/tmp/tessera-bench")
REPS = int(os.environ.get("REPS", "2"))
CEILING_EPOCHS = int(os.environ.get("CEILING_EPOCHS", "30"))
TESSERA = os.path.join(BUILD, "bin", "tessera")
BENCH = os.path.join(BUILD, "bin", "tessera_bench")
DATA = os.path.join(BENCH_DIR, "planted")
OUT = os.path.join(BENCH_DIR, "defaults-" + time.strftime("%Y%m%d-%H%M%S"))
EPOCH_LINE = re.compile(r"^I (\d\d):(\d\d):(\d\d\.\d+) .*epoch (\d+)/\d+: .*test RMSE ([0-9.]+)")


def log(text):
    line = f"[{time.strftime('%H:%M:%S')}] {text}"
    print(line, flush=True)
    with open(os.path.join(OUT, "run.log"), "a", encoding="utf-8") as f:
        f.write(line + "\n")


def run(args, log_name, timeout):
    with open(os.path.join(OUT, log_name), "w", encoding="utf-8") as out:
        subprocess.run([str(a) for a in args], stdout=out, stderr=subprocess.STDOUT, check=True,
                       timeout=timeout)


def records(path, bench):
    with open(path, encoding="utf-8") as f:
        return [r for r in map(json.loads, filter(str.strip, f)) if r.get("bench") == bench]


def ceiling_time(lr, target, rep):
    """Seconds from the start of reading to the first epoch at or below target (None: never)."""
    path = os.path.join(OUT, f"ceiling-lr{lr}-{rep}.jsonl")
    run([BENCH, "--json", path, "--train", f"{DATA}/train.txt", "--test", f"{DATA}/test.txt",
         "--dim", 32, "--epochs", CEILING_EPOCHS, "--lr", lr, "--l2", 0.02, "ceiling"],
        f"ceiling-lr{lr}-{rep}.log", 900)
    for r in records(path, "ceiling_epoch"):
        if r["test_rmse"] <= target:
            return r["elapsed_sec"], r["epoch"]
    return None, None


def tessera_time(target, rep):
    """Seconds from launch to the first epoch line at or below target; final RMSE and epochs."""
    log_path = os.path.join(OUT, f"tessera-{rep}.log")
    launched = datetime.datetime.now()
    start = time.monotonic()
    run([TESSERA, "train", "--train", f"{DATA}/train.txt", "--test", f"{DATA}/test.txt"],
        f"tessera-{rep}.log", 1800)
    wall = time.monotonic() - start
    reached, epochs, final = None, 0, None
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            m = EPOCH_LINE.match(line)
            if not m:
                continue
            epochs, final = int(m.group(4)), float(m.group(5))
            if reached is None and final <= target:
                at = launched.replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0,
                                      microsecond=0) + datetime.timedelta(seconds=float(m.group(3)))
                reached = ((at - launched).total_seconds() % 86400, epochs)
    return reached, final, epochs, wall


def main():
    for binary in (TESSERA, BENCH):
        if not os.access(binary, os.X_OK):
            sys.exit(f"missing {binary}: build with -DTESSERA_BUILD_BENCH=ON first")
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(os.path.join(DATA, "train.txt")):
        log(f"generating the planted set into {DATA}")
        run([TESSERA, "gen", "ratings", "--users", 100000, "--items", 20000, "--ratings",
             10000000, "--rank", 16, "--noise", 0.5, "--seed", 2, "--out", DATA], "gen.log", 900)
    log("ceiling-grid: the best test RMSE over lr {0.05, 0.1} x l2 {0.02, 0.05}")
    grid = os.path.join(OUT, "grid.jsonl")
    run([BENCH, "--json", grid, "--train", f"{DATA}/train.txt", "--test", f"{DATA}/test.txt",
         "--dim", 32, "--epochs", CEILING_EPOCHS, "--grid-lr", "0.05,0.1", "--grid-l2",
         "0.02,0.05", "ceiling-grid"], "grid.log", 1800)
    best = float(records(grid, "ceiling_grid_best")[-1]["best_rmse"])
    target = 1.01 * best
    lines = [f"date: {time.strftime('%Y-%m-%d %H:%M')}, host: {os.cpu_count()} cores, "
             f"load {open('/proc/loadavg').read().split()[0]}",
             f"ceiling's best test RMSE {best:.4f}; target (1 % above) {target:.4f}",
             f"{'rep':<4} {'ceiling s (lr, epoch)':<24} {'tessera s (epoch)':<18} {'ratio':>6} "
             f"{'<= 2x':<6} {'tessera final RMSE, epochs, wall s'}"]
    for rep in range(1, REPS + 1):
        ceiling = []
        for lr in (0.05, 0.1):
            seconds, epoch = ceiling_time(lr, target, rep)
            log(f"rep {rep}: ceiling lr {lr}: {seconds} s (epoch {epoch})")
            if seconds is not None:
                ceiling.append((seconds, lr, epoch))
        reached, final, epochs, wall = tessera_time(target, rep)
        log(f"rep {rep}: tessera defaults: target at {reached}, final {final} after {epochs} "
            f"epochs, {wall:.1f} s")
        c = min(ceiling) if ceiling else None
        ratio = reached[0] / c[0] if c and reached else None
        lines.append(
            f"{rep:<4} {(f'{c[0]:.1f} ({c[1]}, {c[2]})' if c else 'never'):<24} "
            f"{(f'{reached[0]:.1f} ({reached[1]})' if reached else 'never'):<18} "
            f"{(f'{ratio:.2f}' if ratio else '-'):>6} "
            f"{('yes' if ratio and ratio <= 2 else 'no'):<6} {final}, {epochs}, {wall:.1f}")
    summary = "\n".join(lines)
    print("\n" + summary)
    with open(os.path.join(OUT, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(summary + "\n")
    print(f"\nfiles in {OUT}")


if __name__ == "__main__":
    main()
