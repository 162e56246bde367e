#!/usr/bin/env python3
"""The GPU path end to end: `--device cuda` jobs on a real GPU or on the emulated device
(kernels/cuda_emu, TESSERA_CUDA_EMU_DEVICES devices). Skips when `--device cuda` cannot run.

Modes:
  --mode mf [--mpi]       MF, 2 workers on 2 devices (in one process, or mpirun -np 4), 40 epochs
                          of MovieLens 100K u1 (shared data): test RMSE <= 0.925 and within
                          0.003 of the same job on the CPU, run alongside. (The CPU's own bar,
                          0.920, is for one worker and 80 epochs; two CPU workers end at
                          0.9201 after 80 epochs and 0.9211 after 40.)
  --mode deepfm [--mpi]   DeepFM, 2 workers on 2 devices, reaches the CPU's planted-click bar
                          (test AUC within 0.01 of the oracle's) with dense parameters
                          bit-identical on both workers.
  --mode checkpoint       a checkpoint written by a CUDA job resumes on a CPU job and the
                          reverse (MF and DeepFM), and the resumed runs finish with the quality
                          of an uninterrupted one.
  --mode errors           more workers than devices, and an MF or DeepFM batch that does not fit
                          in the device's memory: exit 2 with one line naming the sizes
                          (emulated device only: it needs TESSERA_CUDA_EMU_DEVICES / _MEMORY_MB).
  --mode nodevice         where no device exists: `--device cuda` exits 2 with one line.
"""

import os

import tessera_it as it

MF_RMSE_BAR = 0.925
MF_CPU_GAP = 0.003
AUC_GAP = 0.01


def probe_cuda(ctx):
    """Skips unless a one-step `--device cuda` MF job runs here."""
    tr, te, _ = ctx.gen_ratings("probe", 50, 40, 2000)
    res = ctx.tessera_run(["train", "--device", "cuda", "--epochs", 1, "--train", tr, "--test",
                           te], 120)
    if res.returncode == 2 and "CUDA" in res.stderr:
        raise it.Skip("no usable CUDA device: " + res.stderr.strip().splitlines()[-1])
    it.expect_exit(res, 0, "the --device cuda probe")


def emulated():
    return os.environ.get("TESSERA_CUDA_EMU_DEVICES") is not None


def movielens(ctx):
    ml = os.path.join(it.shared_data_dir(), "ml-100k")
    base, test_file = os.path.join(ml, "u1.base"), os.path.join(ml, "u1.test")
    if not (os.path.isfile(base) and os.path.isfile(test_file)):
        raise it.Skip(f"MovieLens 100K u1.base/u1.test not found in {ml}")
    return base, test_file


def mf(ctx):
    probe_cuda(ctx)
    base, test_file = movielens(ctx)
    # Default flags but 40 epochs, with the CPU's default batch size given explicitly (--device
    # cuda alone picks a batch size for the device).
    args = ["--train", base, "--test", test_file, "--epochs", 40, "--batch-size", 64]
    rmse = {}
    for device in ("cuda", "cpu"):
        job = args + ["--device", device]
        if ctx.args.mpi:
            records, res = ctx.train(f"mf {device} mpirun", job + ["--servers", 1], mpi_ranks=4)
        else:
            records, res = ctx.train(f"mf {device}", job + ["--workers", 2])
        rmse[device] = it.final_rmse(records)
        if device == "cuda":
            it.check(it.grep(r"cuda", res.stderr + res.stdout), "no start-up line names the device")
    print(f"MF, 2 workers: final test RMSE {rmse['cuda']:.4f} on cuda, {rmse['cpu']:.4f} on cpu, "
          f"bar {MF_RMSE_BAR}")
    it.check(rmse["cuda"] <= MF_RMSE_BAR, f"final test RMSE {rmse['cuda']:.4f} > {MF_RMSE_BAR}")
    it.check(abs(rmse["cuda"] - rmse["cpu"]) <= MF_CPU_GAP,
             f"cuda RMSE {rmse['cuda']:.4f} is not within {MF_CPU_GAP} of the CPU's "
             f"{rmse['cpu']:.4f}")


def done_record(records):
    done = [r for r in records if r.get("event") == "done"]
    it.check(done, "no 'done' record")
    return done[-1]


def deepfm(ctx):
    probe_cuda(ctx)
    train_path, test_path, truth = ctx.gen_criteo("planted", 600000, 3, ["--vocab-scale", 0.1])
    oracle = float(truth["oracle_auc"])
    args = ["--model", "deepfm", "--train", train_path, "--test", test_path, "--epochs", 2,
            "--batch-size", 1024, "--seed", 1, "--device", "cuda"]
    if ctx.args.mpi:
        records, _ = ctx.train("deepfm mpirun", args + ["--servers", 1], mpi_ranks=4,
                               timeout_s=1500)
    else:
        records, _ = ctx.train("deepfm", args + ["--workers", 2], timeout_s=1500)
    done = done_record(records)
    it.check(done.get("dense_params_identical") is True,
             f"dense parameters differ between the workers: {done}")
    auc = float(done["auc"])
    print(f"DeepFM on --device cuda, 2 workers: test AUC {auc:.4f}, oracle {oracle:.4f}")
    it.check(auc >= oracle - AUC_GAP, f"AUC {auc:.4f} is more than {AUC_GAP} below the oracle "
             f"{oracle:.4f}")


def checkpoint(ctx):
    probe_cuda(ctx)
    tr, te, truth = ctx.gen_ratings("ratings", 300, 200, 30000, seed=4)
    mf_args = ["--train", tr, "--test", te, "--epochs", 6, "--batch-size", 64, "--seed", 3]
    ctr_tr, ctr_te, _ = ctx.gen_criteo("clicks", 20000, 5)
    ctr_args = ["--model", "deepfm", "--train", ctr_tr, "--test", ctr_te, "--epochs", 2,
                "--emb-dim", 8, "--mlp", "32,16", "--batch-size", 512, "--seed", 3]
    for model, args in (("mf", mf_args), ("deepfm", ctr_args)):
        for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
            ckpt = ctx.path(f"ckpt-{model}-{first}")
            half = args[:]
            epochs_at = half.index("--epochs") + 1
            half[epochs_at] = max(1, int(half[epochs_at]) // 2)
            ctx.train(f"{model} {first} first half", half + [
                "--device", first, "--checkpoint-dir", ckpt])
            # The first half ran fewer epochs: a change of the job's identity, allowed.
            resumed, _ = ctx.train(f"{model} {second} resumed", args + [
                "--device", second, "--checkpoint-dir", ckpt, "--resume", ckpt,
                "--resume-override", "epochs"])
            straight, _ = ctx.train(f"{model} {second} straight", args + ["--device", second])
            a, b = done_record(resumed), done_record(straight)
            key = "rmse" if model == "mf" else "auc"
            got, want = float(a[key]), float(b[key])
            print(f"{model}: {first} checkpoint resumed on {second}: {key} {got:.4f}, "
                  f"uninterrupted {want:.4f}")
            it.check(abs(got - want) <= 0.02 * max(1.0, abs(want)),
                     f"{model} resumed from a {first} checkpoint on {second}: {key} {got:.4f} "
                     f"vs {want:.4f} uninterrupted")


def one_line_error(res, what, *needles):
    it.expect_exit(res, 2, what)
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    it.check(len(lines) >= 1, f"{what}: no message\n{res.tail()}")
    last = lines[-1]
    for needle in needles:
        it.check(needle in last, f"{what}: the message does not name {needle!r}: {last}")
    print(f"  {what}: {last}")


def errors(ctx):
    if not emulated():
        raise it.Skip("needs the emulated device (TESSERA_CUDA_EMU_DEVICES)")
    probe_cuda(ctx)
    env = dict(ctx.env())
    env["TESSERA_CUDA_EMU_DEVICES"] = "1"
    res = it.run([ctx.tessera, "train", "--device", "cuda", "--workers", 2, "--epochs", 1], 120,
                 env=env)
    one_line_error(res, "2 workers on 1 device", "2", "1")
    env = dict(ctx.env())
    env["TESSERA_CUDA_EMU_MEMORY_MB"] = "1"
    tr, te, _ = ctx.gen_ratings("big", 20000, 20000, 200000, seed=2)
    res = it.run([ctx.tessera, "train", "--device", "cuda", "--train", tr, "--test", te,
                  "--batch-size", 65536, "--dim", 128, "--epochs", 1], 300, env=env)
    one_line_error(res, "a batch larger than the device memory", "bytes")
    ctr_tr, ctr_te, _ = ctx.gen_criteo("clicks", 5000, 6)
    res = it.run([ctx.tessera, "train", "--model", "deepfm", "--device", "cuda", "--train", ctr_tr,
                  "--test", ctr_te, "--batch-size", 65536, "--epochs", 1], 300, env=env)
    one_line_error(res, "a DeepFM batch larger than the device memory", "bytes")


def nodevice(ctx):
    res = ctx.tessera_run(["train", "--device", "cuda", "--epochs", 1], 120)
    if res.returncode == 0:
        raise it.Skip("a CUDA device is usable here")
    one_line_error(res, "--device cuda without a device", "--device cuda", "CUDA")


def add_args(p):
    p.add_argument("--mode", choices=["mf", "deepfm", "checkpoint", "errors", "nodevice"],
                   required=True)
    p.add_argument("--mpi", action="store_true")


def test(ctx):
    {"mf": mf, "deepfm": deepfm, "checkpoint": checkpoint, "errors": errors,
     "nodevice": nodevice}[ctx.args.mode](ctx)


if __name__ == "__main__":
    it.main(test, __doc__, add_args)
