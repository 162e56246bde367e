#!/usr/bin/env python3
"""With --deterministic, MF and DeepFM on --device cuda are bit-identical run to run.

The CUDA MF gradient then sums each row's samples in sample order over a host-built segment plan
(kernels/segments.h) instead of with float atomics. Two runs (--seed 7, 2 epochs) must give the
same per-epoch loss and test rmse/mae, compared as exact JSON text. On the emulated device the two
runs use different block and fiber schedules (TESSERA_CUDA_EMU_SEED), under which the atomic path's
sums change order; on a GPU they are simply two runs. The CUDA run must also land within 0.1% of
the CPU run's final RMSE (the GPU's dot products and fused multiply-adds round differently, so
not bit-identical). DeepFM (2 workers, so the dense all-reduce runs too) must give the same
metrics text under two schedules as well: its embedding backwards then reduce over segment
plans and its loss sum in one block. Skips when `--device cuda` finds no device (a real build on a machine
without a GPU).
"""

import tessera_it as it

SEED = 7
DATA_SEED = 11
EPOCHS = 2
RUN_LIMIT_S = 240


def train(ctx, data, name, extra, schedule_seed):
    train_path, test_path = data
    metrics = ctx.path(f"metrics-{name}.jsonl")
    args = ["train", "--train", train_path, "--test", test_path, "--seed", SEED,
            "--epochs", EPOCHS, "--metrics-out", metrics] + extra
    env = ctx.env()
    env["TESSERA_CUDA_EMU_SEED"] = str(schedule_seed)  # read by the emulated device only
    res = it.run([ctx.tessera] + [str(a) for a in args], RUN_LIMIT_S, env=env)
    if res.returncode == 2 and it.grep(r"no usable CUDA device|built without CUDA", res.stderr):
        raise it.Skip(f"--device cuda is not available here: {res.tail(3)}")
    it.expect_exit(res, 0, f"run '{name}'")
    return it.read_metrics(metrics)


def test(ctx):
    train_path, test_path, _ = ctx.gen_ratings("data", users=2000, items=500, ratings=60000,
                                               seed=DATA_SEED)
    data = (train_path, test_path)
    # The CPU's batch size: --device cuda alone would pick the device's (8192).
    cuda = ["--device", "cuda", "--deterministic", "--batch-size", 64]
    first = train(ctx, data, "cuda-1", cuda, schedule_seed=1)
    second = train(ctx, data, "cuda-2", cuda, schedule_seed=987654321)
    series, ref = it.model_series(second), it.model_series(first)
    it.check(len(ref) >= 2 * EPOCHS, f"too few numbers in the metrics: {ref}")
    for i, (got, want) in enumerate(zip(series, ref)):
        it.check(got == want, f"second --deterministic CUDA run differs at number {i}: {got} != "
                              f"{want} (seed {SEED}, data seed {DATA_SEED})")
    it.check(len(series) == len(ref), f"{len(series)} numbers, the first run {len(ref)}")
    print(f"  two --deterministic CUDA runs are bit-identical ({len(ref)} numbers)")

    cpu = train(ctx, data, "cpu", ["--deterministic"], schedule_seed=1)
    cuda_rmse, cpu_rmse = it.final_rmse(first), it.final_rmse(cpu)
    gap = abs(cuda_rmse - cpu_rmse) / cpu_rmse
    print(f"  final test RMSE: cuda {cuda_rmse:.9f}, cpu {cpu_rmse:.9f} (gap {gap:.2e})")
    it.check(gap <= 1e-3, f"CUDA RMSE {cuda_rmse} is {100 * gap:.3f}% from the CPU's {cpu_rmse}")

    out = ctx.path("clicks")
    it.expect_exit(ctx.tessera_run(["gen", "criteo", "--rows", 4000, "--seed", 5, "--out", out],
                                   120), 0, "tessera gen criteo")
    deepfm = ["--model", "deepfm", "--device", "cuda", "--deterministic", "--workers", 2,
              "--emb-dim", 8, "--mlp", "32,16", "--batch-size", 256]
    ctr_data = (f"{out}/train.tsv", f"{out}/test.tsv")
    runs = [it.model_series(train(ctx, ctr_data, f"deepfm-{s}", deepfm, schedule_seed=s))
            for s in (1, 987654321)]
    it.check(len(runs[0]) >= 3 and runs[0] == runs[1],
             f"two --deterministic DeepFM CUDA runs differ:\n{runs[0]}\n{runs[1]}")
    print(f"  two --deterministic DeepFM CUDA runs are bit-identical ({len(runs[0])} numbers)")


if __name__ == "__main__":
    it.main(test, __doc__)
