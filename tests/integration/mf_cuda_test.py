#!/usr/bin/env python3
"""MF trains with --device cuda to the CPU's quality, through the staged CUDA step.

The same planted set and flags on --device cpu and --device cuda, in one process: with 1 server
(the pulled rows decoded from one reply into the workspace's pinned staging) and with 2 servers and
2 workers (rows gathered from several replies into it; pushes split from the pinned gradients).
Final train MSE within 2 % and test RMSE within 0.01 of the CPU's (the GPU sums with atomics, so
the runs are not bit-identical). Skips (77) where no CUDA device is usable: a real build without a
GPU; the emulated build (-DTESSERA_CUDA_EMULATION=ON) runs it. The device's batch size default
(8192 without --batch-size) shows in the start-up summary.
"""

import tessera_it as it

LOSS_TOLERANCE = 0.02   # relative, final train MSE
RMSE_TOLERANCE = 0.01   # absolute, final test RMSE


def final_loss(records):
    train = [r for r in records if r.get("event") == "train"]
    it.check(train, "metrics have no 'train' record")
    return float(train[-1]["loss"])


def train(ctx, device, name, extra, train_path, test_path):
    metrics = ctx.path(f"{name}-{device}.jsonl")
    res = ctx.tessera_run(["train", "--device", device, "--train", train_path, "--test", test_path,
                           "--dim", "16", "--epochs", "3", "--batch-size", "512", "--seed", "3",
                           "--metrics-out", metrics] + extra, 600)
    if device == "cuda" and res.returncode == 2 and "cuda" in res.stderr.lower() and (
            "no usable cuda device" in res.stderr.lower() or "without cuda" in res.stderr.lower()):
        raise it.Skip("no usable CUDA device: " + res.stderr.strip().splitlines()[-1])
    it.expect_exit(res, 0, f"tessera train --device {device} ({name})")
    records = it.read_metrics(metrics)
    return final_loss(records), it.final_rmse(records), res


def test(ctx):
    train_path, test_path, _ = ctx.gen_ratings("data", users=1500, items=400, ratings=60000,
                                               seed=11)
    for name, extra in (("one-server", []),
                        ("two-servers-two-workers", ["--servers", "2", "--workers", "2"])):
        cpu_loss, cpu_rmse, _ = train(ctx, "cpu", name, extra, train_path, test_path)
        gpu_loss, gpu_rmse, _ = train(ctx, "cuda", name, extra, train_path, test_path)
        print(f"{name}: train MSE cpu {cpu_loss:.6f} cuda {gpu_loss:.6f}; "
              f"test RMSE cpu {cpu_rmse:.5f} cuda {gpu_rmse:.5f}")
        it.check(abs(gpu_loss - cpu_loss) <= LOSS_TOLERANCE * cpu_loss,
                 f"{name}: train MSE on cuda {gpu_loss} vs cpu {cpu_loss}")
        it.check(abs(gpu_rmse - cpu_rmse) <= RMSE_TOLERANCE,
                 f"{name}: test RMSE on cuda {gpu_rmse} vs cpu {cpu_rmse}")
    # No --batch-size on cuda: the device default, named in the start-up summary.
    res = ctx.tessera_run(["train", "--device", "cuda", "--train", train_path, "--dim", "8",
                           "--epochs", "1"], 600)
    it.expect_exit(res, 0, "tessera train --device cuda without --batch-size")
    it.check("batch-size = 8192 (default for --device cuda)" in res.stderr,
             f"the start-up summary does not name the device batch size\n{res.tail()}")


if __name__ == "__main__":
    it.main(test, __doc__)
