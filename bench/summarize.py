#!/usr/bin/python3
"""Summary table of one bench/run_mf_bench.sh run: python3 bench/summarize.py RESULTS_DIR.

Reads bench.jsonl (tessera_bench), ceiling.jsonl (tessera_bench ceiling), train-*.json (tessera
--metrics-out), torch-d*.json and scaling.jsonl (bench/run_mf_scaling.sh), and prints every figure
next to its target or baseline, with the ratio. Tessera's steady ratings/s is also quoted as a
fraction of the MF ceiling's (FPSGD, bench/fpsgd.h) on the same data and dim. "steady" is the
mean rate of the epochs after the first (the rows exist); "epoch 1" also creates every row on the
servers.
Figures over repetitions are medians; the individual values follow in brackets.
"""
import glob
import json
import os
import re
import statistics
import sys

TARGETS = {  # ratings/s, in-process, 2 cores
    32: 6e6,
    128: 2.5e6,
}
READ_TARGET = 5e6  # lines/s
MPI_TARGET = 0.5  # x in-process
NET_TARGET = 0.5  # x raw ZeroMQ
MEMORY_BUDGET = 1.25  # x (dim + state) x 4 bytes
CEILING_TARGETS = {"inproc": 0.5, "mpi": 0.35}  # issue 15: x the ceiling's updates/s
LIBMF = {32: 35e6, 128: 11e6}  # issue 15: LIBMF's steady updates/s on this machine class


def human(v, unit=""):
    if v is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{suffix}{unit}"
    return f"{v:.1f}{unit}"


def load_lines(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def train_rates(path):
    """(epoch-1 rate, steady rate) from a --metrics-out file, or None."""
    if not os.path.exists(path):
        return None
    rates = [e["samples_per_sec"] for e in load_lines(path) if e.get("event") == "train"]
    if not rates:
        return None
    steady = statistics.mean(rates[1:]) if len(rates) > 1 else rates[0]
    return rates[0], steady


def main():
    out = sys.argv[1]
    rows = []  # (figure, value, reference, ratio, verdict, detail)

    def add(figure, value, reference="", ratio=None, verdict="", detail=""):
        rows.append((figure, value, reference, "" if ratio is None else f"{ratio:.2f}x", verdict,
                     detail))

    def met(ok):
        return "met" if ok else "MISSED"

    bench = load_lines(os.path.join(out, "bench.jsonl")) if os.path.exists(
        os.path.join(out, "bench.jsonl")) else []
    by = {}
    for b in bench:
        by.setdefault(b["bench"], []).append(b)

    for r in by.get("read", []):
        v = r["lines_per_sec"]
        add(f"read train.txt, {int(r['threads'])} thread(s)", human(v, " lines/s"),
            f">= {human(READ_TARGET)}", v / READ_TARGET, met(v >= READ_TARGET),
            f"best {human(r['lines_per_sec_best'])}")

    # Training runs: train-{mode}-d{dim}-r{rep}.json
    runs = {}
    for path in glob.glob(os.path.join(out, "train-*-d*-r*.json")):
        m = re.search(r"train-(\w+)-d(\d+)-r(\d+)\.json$", path)
        rates = train_rates(path)
        if m and rates:
            runs.setdefault((m.group(1), int(m.group(2))), []).append(rates)
    torch = {}
    for path in glob.glob(os.path.join(out, "torch-d*.json")):
        done = [e for e in load_lines(path) if e.get("event") == "done"]
        if done:
            torch[int(re.search(r"torch-d(\d+)", path).group(1))] = done[-1]

    ceiling = {}  # dim -> [ceiling lines], one per rep
    ceiling_path = os.path.join(out, "ceiling.jsonl")
    for c in load_lines(ceiling_path) if os.path.exists(ceiling_path) else []:
        if c.get("bench") == "ceiling":
            ceiling.setdefault(int(c["dim"]), []).append(c)

    dims = sorted({d for (_, d) in runs} | set(torch) | set(ceiling))
    for dim in dims:
        inproc = runs.get(("inproc", dim), [])
        mpi = runs.get(("mpi", dim), [])
        med_in = statistics.median(r[1] for r in inproc) if inproc else None
        if inproc:
            target = TARGETS.get(dim)
            reps = ", ".join(human(r[1]) for r in inproc)
            add(f"MF dim {dim}, in-process, steady", human(med_in, " ratings/s"),
                f">= {human(target)}" if target else "", med_in / target if target else None,
                met(med_in >= target) if target else "", f"reps {reps}")
            first = statistics.median(r[0] for r in inproc)
            add(f"MF dim {dim}, in-process, epoch 1", human(first, " ratings/s"),
                detail="epoch 1 also creates every row")
        if mpi:
            med_mpi = statistics.median(r[1] for r in mpi)
            reps = ", ".join(human(r[1]) for r in mpi)
            ratio = med_mpi / med_in if med_in else None
            add(f"MF dim {dim}, mpirun 1+1, steady", human(med_mpi, " ratings/s"),
                f">= {MPI_TARGET} x in-process", ratio,
                met(ratio is not None and ratio >= MPI_TARGET), f"reps {reps}")
        shuffled = runs.get(("shuffled", dim), [])
        if shuffled:
            med_sh = statistics.median(r[1] for r in shuffled)
            add(f"MF dim {dim}, in-process, --order shuffled", human(med_sh, " ratings/s"),
                "in-process (blocked)", med_sh / med_in if med_in else None,
                detail="the general path: every rating shuffled")
        tcp = runs.get(("mpitcp", dim), [])
        if tcp:
            med_tcp = statistics.median(r[1] for r in tcp)
            reps = ", ".join(human(r[1]) for r in tcp)
            add(f"MF dim {dim}, mpirun 1+1, --shared-memory off", human(med_tcp, " ratings/s"),
                "in-process", med_tcp / med_in if med_in else None,
                detail=f"reps {reps}; frames through TCP loopback")
        ceil = ceiling.get(dim, [])
        if ceil:
            med_ceil = statistics.median(c["updates_per_sec"] for c in ceil)
            per_cpu = statistics.median(c.get("updates_per_cpu_sec_x_threads", 0) for c in ceil)
            reps = ", ".join(human(c["updates_per_sec"]) for c in ceil)
            add(f"MF ceiling dim {dim} (FPSGD, 2 threads)", human(med_ceil, " updates/s"),
                f"LIBMF {human(LIBMF[dim])}" if dim in LIBMF else "",
                med_ceil / LIBMF[dim] if dim in LIBMF else None,
                met(med_ceil >= 0.7 * LIBMF[dim]) if dim in LIBMF else "",
                f"reps {reps}; per CPU second x 2: {human(per_cpu)}; "
                f"test RMSE {ceil[-1]['test_rmse']:.4f}, load {ceil[-1]['load_sec']:.1f} s")
            for mode, label in (("inproc", "in-process"), ("shuffled", "in-process, shuffled"),
                                ("mpi", "mpirun 1+1"), ("mpitcp", "mpirun 1+1, TCP")):
                rates = runs.get((mode, dim), [])
                if not rates:
                    continue
                ratio = statistics.median(r[1] for r in rates) / med_ceil
                target = CEILING_TARGETS.get(mode)
                add(f"  tessera {label} / ceiling, dim {dim}", "",
                    f">= {target}x" if target else "", ratio,
                    met(ratio >= target) if target else "", "steady ratings/s over updates/s")
        t = torch.get(dim)
        if t:
            note = ", first %d ratings" % t["ratings"] if t["ratings"] < 9e6 else ""
            add(f"PyTorch dim {dim}, 2 threads", human(t["samples_per_sec"], " ratings/s"),
                detail=f"{t['framework']}, sparse Adagrad{note}, test RMSE {t['test_rmse']:.4f}")
            if med_in:
                add(f"  tessera in-process / PyTorch, dim {dim}", "", "",
                    med_in / t["samples_per_sec"])

    for name, raw_name, label in (("ps_pull", "raw_pull", "pull"), ("ps_push", "raw_push", "push"),
                                  ("shm_pull", "raw_pull", "pull, shared memory"),
                                  ("shm_push", "raw_push", "push, shared memory")):
        for ps in by.get(name, []):
            raw = by.get(raw_name, [{}])[0]
            ratio = ps["ratio_to_raw"]
            add(f"PS {label}, ZeroMQ loopback", f"{ps['gb_per_sec']:.2f} GB/s",
                f"raw ZeroMQ {raw.get('gb_per_sec', 0):.2f} GB/s", ratio,
                met(ratio >= NET_TARGET),
                f"{human(ps['rows_per_sec'])} rows/s; {int(ps['keys'])} keys x dim "
                f"{int(ps['dim'])}, {int(ps['depth'])} in flight")
    for s in by.get("raw_push_rounds", []):
        add("raw ZeroMQ push in PsClient's rounds", f"{s['gb_per_sec']:.2f} GB/s")
    for s in by.get("raw_stream", []):
        add("raw ZeroMQ one-way stream", f"{s['gb_per_sec']:.2f} GB/s")

    mem = by.get("memory", [])
    worst_adagrad = {}
    for rowwise, dim in sorted({(int(m.get("rowwise", 0)), int(m["dim"])) for m in mem}):
        same = [m for m in mem if int(m["dim"]) == dim and int(m.get("rowwise", 0)) == rowwise]
        worst = max(same, key=lambda m: m["rss_bytes_per_row"])
        detail = (f"resident, worst of {len(same)} sizes: {int(worst['rows'])} rows, "
                  f"index load {worst['index_load']:.2f}")
        if not rowwise:  # Adagrad: against the budget of the first wave
            worst_adagrad[dim] = worst["rss_bytes_per_row"]
            add(f"table memory, {dim} weights + Adagrad", f"{worst['rss_bytes_per_row']:.0f} B/row",
                f"<= {worst['budget_bytes_per_row']:.0f} B/row",
                worst["rss_bytes_per_row"] / worst["budget_bytes_per_row"],
                met(worst["rss_bytes_per_row"] <= worst["budget_bytes_per_row"]), detail)
        elif dim in worst_adagrad:  # row-wise Adagrad: against Adagrad's rows
            add(f"table memory, {dim} weights + row-wise Adagrad",
                f"{worst['rss_bytes_per_row']:.0f} B/row",
                f"Adagrad {worst_adagrad[dim]:.0f} B/row",
                worst["rss_bytes_per_row"] / worst_adagrad[dim], "", detail)

    scaling_path = os.path.join(out, "scaling.jsonl")
    for sc in load_lines(scaling_path) if os.path.exists(scaling_path) else []:
        if sc.get("stage") == "rows":
            ratio = (sc["tessera_per_sec"] / sc["ceiling_per_sec"]
                     if sc.get("ceiling_per_sec") else None)
            add(f"scaling: {human(sc['rows'])} rows, dim 32", human(sc["tessera_per_sec"],
                                                                   " ratings/s"),
                f"ceiling {human(sc.get('ceiling_per_sec'))}", ratio, "",
                f"{sc['bytes_per_row']:.0f} resident B/row; epoch 1 "
                f"{human(sc['tessera_first_per_sec'])}")
        elif sc.get("stage") == "procs":
            add(f"scaling: mpirun {int(sc['servers'])} servers + {int(sc['workers'])} workers",
                human(sc["tessera_per_sec"], " ratings/s"), detail="dim 32, steady")

    with open(os.path.join(out, "machine.txt")) as f:
        print(f.read().rstrip())
    w0 = max(len(r[0]) for r in rows) if rows else 10
    w1 = max(len(r[1]) for r in rows) if rows else 10
    w2 = max(len(r[2]) for r in rows) if rows else 10
    print()
    print(f"{'figure':<{w0}}  {'value':>{w1}}  {'target/baseline':<{w2}}  {'ratio':>6}  "
          f"{'verdict':<7}  detail")
    for figure, value, reference, ratio, verdict, detail in rows:
        print(f"{figure:<{w0}}  {value:>{w1}}  {reference:<{w2}}  {ratio:>6}  {verdict:<7}  "
              f"{detail}")
    kernels = [b for b in bench if b["bench"].startswith("kernel_")]
    if kernels:
        print("\nkernels, one thread (tessera_bench kernels):")
        for k in kernels:
            print(f"  dim {int(k['dim']):>3} {k['bench']:<20} {human(k['per_sec'])}/s")


if __name__ == "__main__":
    main()
