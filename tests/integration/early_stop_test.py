#!/usr/bin/env python3
"""Early stopping ends MF training when the RMSE of held-out training ratings stops improving.

Two workers in one process train a planted rank-4 set with --early-stop 2 and --valid-fraction
0.05 under a generous --epochs: training must end well before it, on both workers at the same
epoch (one 'done' record), with a 'valid' evaluation after every epoch and the test set never
used for the decision; the model must still be good (test RMSE within 15 % of the planted noise).
Resuming the job from its last checkpoint says the run is finished and exits 0 without training.
"""

import tessera_it as it

MAX_EPOCHS = 200


def test(ctx):
    train, test_file, truth = ctx.gen_ratings("data", 2000, 500, 100000, rank=4, seed=3)
    flags = ["--train", train, "--test", test_file, "--dim", 8, "--lr", 0.05, "--l2", 0.02,
             "--batch-size", 256, "--epochs", MAX_EPOCHS, "--early-stop", 2,
             "--valid-fraction", 0.05, "--workers", 2, "--checkpoint-dir", ctx.path("ck"),
             "--checkpoint-epochs"]
    records, res = ctx.train("early stop", flags)
    done = [r for r in records if r.get("event") == "done"]
    it.check(len(done) == 1, f"expected one 'done' record, got {len(done)}")
    epochs = int(done[0]["epochs"])
    it.check(3 <= epochs < MAX_EPOCHS, f"trained {epochs} of {MAX_EPOCHS} epochs: no early stop")
    valid = [r for r in records if r.get("event") == "eval" and r.get("split") == "valid"]
    test = [r for r in records if r.get("event") == "eval" and r.get("split") == "test"]
    it.check(len(valid) == epochs and len(test) == epochs,
             f"{len(valid)} valid and {len(test)} test evaluations for {epochs} epochs")
    rmse = [float(r["rmse"]) for r in valid]
    # The rule replayed on the recorded validation RMSEs: the run must end at the first epoch
    # that completes 2 epochs without a better one.
    stop_at = it.early_stop_epoch(rmse, 2)
    it.check(stop_at == epochs,
             f"training ended after epoch {epochs}, the rule says {stop_at}: {rmse[-4:]}")
    best = min(range(epochs), key=lambda e: rmse[e])
    it.check(it.grep(r"training ends here", res.stderr + res.stdout), "no early-stop line")
    final = it.final_rmse(records)
    noise = float(truth["test_noise_rmse"])
    it.check(final <= 1.15 * noise, f"final test RMSE {final:.4f} > 1.15 x noise {noise:.4f}")
    print(f"early stop after {epochs} of {MAX_EPOCHS} epochs (best validation RMSE "
          f"{rmse[best]:.4f} after epoch {best + 1}); test RMSE {final:.4f}, noise {noise:.4f}")

    again = ctx.tessera_run(["train"] + flags + ["--resume", "auto"], 120)
    it.expect_exit(again, 0, "resume of a run that early stopping ended")
    it.check(it.grep(r"--early-stop ended", again.stderr + again.stdout),
             "the resume does not say the run was ended by early stopping\n" + again.tail())


if __name__ == "__main__":
    it.main(test, __doc__)
