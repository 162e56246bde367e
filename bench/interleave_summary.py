#!/usr/bin/env python3
"""The summary of a bench/interleave.sh run: interleave_summary.py RESULTS_DIR.

Reads RESULTS_DIR/rates.txt (workload, old|new, samples/s per run, in run order: the old and new
run of a rep are back to back) and, for MF, every epoch's rate from the runs' metrics files.
Prints per workload the median of each binary; the pairs' ratios (median, geometric mean and a
bootstrap 95 % interval of the geometric mean); and for MF the ratio of the 90th percentiles of
all epochs after the first of each binary, the least disturbed epochs of a shared machine.
"""
import json
import math
import random
import statistics
import sys
from pathlib import Path


def epoch_rates(path):
    records = [json.loads(l) for l in open(path) if l.strip()]
    return [r["samples_per_sec"] for r in records if r.get("event") == "train"][1:]


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def bootstrap_interval(logs, draws=10000):
    rng = random.Random(1)
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(draws))
    return math.exp(means[int(0.025 * draws)]), math.exp(means[int(0.975 * draws)])


def main():
    out = Path(sys.argv[1])
    runs = {}
    for line in open(out / "rates.txt"):
        workload, tag, value = line.split()
        runs.setdefault(workload, {}).setdefault(tag, []).append(float(value))
    print(f"{'workload':10} {'old median':>12} {'new median':>12} {'new/old':>8}  samples/s, runs")
    for workload, by_tag in runs.items():
        o, n = statistics.median(by_tag["old"]), statistics.median(by_tag["new"])
        print(f"{workload:10} {o:12.0f} {n:12.0f} {n / o:8.3f}  "
              f"{len(by_tag['old'])}+{len(by_tag['new'])}")
    print()
    for workload, by_tag in runs.items():
        ratios = [n / o for o, n in zip(by_tag["old"], by_tag["new"])]
        logs = [math.log(r) for r in ratios]
        line = (f"{workload}: {len(ratios)} pairs, ratio median {statistics.median(ratios):.3f}, "
                f"geometric mean {math.exp(statistics.fmean(logs)):.3f}")
        if len(ratios) >= 5:
            low, high = bootstrap_interval(logs)
            line += f" (95 % {low:.3f} .. {high:.3f})"
        line += f", pairs {min(ratios):.2f} .. {max(ratios):.2f}"
        if workload.startswith("mf"):
            per_run = {tag: [epoch_rates(out / f"{workload}-{tag}-{rep}.jsonl")
                             for rep in range(1, len(by_tag[tag]) + 1)] for tag in ("old", "new")}
            p90 = {tag: percentile(sum(r, []), 0.9) for tag, r in per_run.items()}
            line += (f"; epochs' 90th percentile {p90['old']:.0f} / {p90['new']:.0f} = "
                     f"{p90['new'] / p90['old']:.3f}")
            if len(ratios) >= 5:  # the runs resampled, each binary's epochs pooled
                rng, draws = random.Random(2), []
                for _ in range(2000):
                    q = {tag: percentile(sum(rng.choices(r, k=len(r)), []), 0.9)
                         for tag, r in per_run.items()}
                    draws.append(q["new"] / q["old"])
                draws.sort()
                line += f" (95 % {draws[50]:.3f} .. {draws[1950]:.3f})"
        print(line)


if __name__ == "__main__":
    main()
