#!/usr/bin/python3
"""Summary of one bench/run_ctr_bench.sh run: DeepFM and DCN-v2 samples/s and test AUC of tessera
(in one process and under mpirun) next to PyTorch's for the same model, and the model's achieved
matrix-product rate (its products' FLOPs per sample x samples/s) as a fraction of the best
whole-MLP GEMM rate measured in the run (OpenBLAS as found, OpenBLAS with its AVX-512 kernel
forced, oneDNN), each against the issue's target.

  summarize_ctr.py OUT_DIR     (reads blas*.jsonl, train-*.json, torch*.json, machine.txt)

Every run is compared with the best GEMM rate of the run; runs tagged "-unset" (OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE unset for that command) with the PyTorch baseline measured the same way, when it
exists.
"""
import glob
import json
import os
import sys


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def done(path):
    for rec in reversed(lines(path)):
        if rec.get("event") == "done":
            return rec
    return None


def blas(path, library="blas"):
    for rec in lines(path):
        if rec.get("bench") == library + " mlp_step":
            return rec
    return None


# The DCN-v2 runs' extra products per sample beyond the MLP's (emb 16 x 26 fields + 13 dense):
# 3 full-rank cross layers of x0_dim^2 and the output layer's wider input, each forward, dW and
# dx, 2 FLOPs a multiply-add.
X0_DIM = 26 * 16 + 13
DCN_EXTRA_FLOPS = 3 * 3 * 2 * X0_DIM * X0_DIM + 3 * 2 * X0_DIM


def model_of(tag):
    return "dcn_v2" if tag.startswith("dcn_v2") else "deepfm"


def main():
    out = sys.argv[1]
    if os.path.exists(os.path.join(out, "machine.txt")):
        print(open(os.path.join(out, "machine.txt")).read().rstrip())
    torch = done(os.path.join(out, "torch.json"))
    torch_u = done(os.path.join(out, "torch-unset.json"))
    torch_dcn = done(os.path.join(out, "dcn_v2-torch.json"))
    found = blas(os.path.join(out, "blas.jsonl"))
    forced = blas(os.path.join(out, "blas-forced.jsonl"))
    onednn = blas(os.path.join(out, "blas.jsonl"), "onednn")
    onednn_sgemm = blas(os.path.join(out, "blas.jsonl"), "onednn_sgemm")
    bu = blas(os.path.join(out, "blas-unset.jsonl"))
    # The ceiling every run is measured against: the fastest whole-MLP GEMM rate of this run.
    b = max((r for r in (found, forced, onednn, onednn_sgemm, bu) if r),
            key=lambda r: r["gflops"], default=None)
    runs = []
    for path in sorted(glob.glob(os.path.join(out, "train-*.json"))):
        rec = done(path)
        if rec:
            runs.append((os.path.basename(path)[6:-5], rec))
    print()
    for label, r in (("OpenBLAS as found (env as is)", found),
                     ("OpenBLAS, OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset", bu),
                     ("OpenBLAS, AVX-512 kernel forced (SkylakeX)", forced),
                     ("oneDNN matmul primitives (tessera's dense layers)", onednn),
                     ("oneDNN's sgemm call", onednn_sgemm)):
        if r:
            print("%-52s whole MLP step %6.1f GFLOP/s (best %6.1f) -> %6.0f samples/s" % (
                label, r["gflops"], r["gflops_best"], r["gflops"] * 1e9 / r["flops_per_sample"]))
    if b:
        print("best GEMM ceiling: %.1f GFLOP/s, %.0f FLOPs/sample" % (b["gflops"],
                                                                     b["flops_per_sample"]))
    print()
    hdr = "%-20s %12s %8s %14s %12s %14s %12s" % (
        "run", "samples/s", "AUC", "x PyTorch", "dAUC", "GEMM GFLOP/s", "of best")
    print(hdr)
    print("-" * len(hdr))
    def flops(tag):  # products per sample of the run's model
        return b["flops_per_sample"] + (DCN_EXTRA_FLOPS if model_of(tag) == "dcn_v2" else 0)

    for tag, t in (("pytorch", torch), ("pytorch-unset", torch_u), ("dcn_v2-pytorch", torch_dcn)):
        if t:
            gf = t["samples_per_sec"] * flops(tag) / 1e9 if b else 0
            print("%-20s %12.0f %8.4f %14s %12s %14.1f %11.0f%%" % (
                tag, t["samples_per_sec"], t["auc"], "1.00", "0", gf,
                100 * gf / b["gflops"] if b else float("nan")))
    verdicts = []
    for tag, rec in runs:
        sps, auc = rec["samples_per_sec"], rec["auc"]
        if model_of(tag) == "dcn_v2":
            base = torch_dcn
        else:
            base = torch_u if ("unset" in tag and torch_u) else torch
        ratio = sps / base["samples_per_sec"] if base else float("nan")
        dauc = auc - base["auc"] if base else float("nan")
        gf = sps * flops(tag) / 1e9 if b else float("nan")
        frac = gf / b["gflops"] if b else float("nan")
        print("%-20s %12.0f %8.4f %14.2f %+12.4f %14.1f %11.0f%%" % (
            tag, sps, auc, ratio, dauc, gf, 100 * frac))
        verdicts.append((tag, ratio, dauc, frac))
    print()
    print("targets: >= 3.00 x the same model's PyTorch samples/s; |dAUC| <= 0.003; the model's "
          "products >= 70% of the best whole-MLP GEMM rate of this run (samples/s x FLOPs/sample "
          "/ GFLOP/s; the rest of the step counted as if it were free)")
    for tag, ratio, dauc, frac in verdicts:
        def verdict(ok, value):  # nan (no PyTorch or BLAS run) -> n/a
            return "n/a" if value != value else ("MET" if ok else "MISSED")
        print("  %-18s speed %s (%.2fx)  AUC %s (%+.4f)  BLAS %s (%.0f%%)" % (
            tag, verdict(ratio >= 3, ratio), ratio, verdict(abs(dauc) <= 0.003, dauc), dauc,
            verdict(frac >= 0.7, frac), 100 * frac))


if __name__ == "__main__":
    main()
