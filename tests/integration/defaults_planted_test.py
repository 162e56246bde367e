#!/usr/bin/env python3
"""MF's default flags on a large learnable set: within 1 % of the best the ceiling trainer finds.

The planted set of issue 15 (`tessera gen ratings --users 100000 --items 20000 --ratings
10000000 --rank 16 --noise 0.5 --seed 2`: about 90 ratings per user) is trained by
`tessera train --train --test` with no tuning flag. The chosen flags must be named in a start-up
line, early stopping (on ratings held out of the training file) must end the run before its
epoch limit, and the final test RMSE must be at most 1 % above the best test RMSE that the FPSGD
ceiling of bench/ (`tessera_bench ceiling-grid`, next to the tessera binary) reaches over a small
grid of learning rates and L2. Skips when tessera_bench was not built (TESSERA_BUILD_BENCH=OFF).
"""

import json
import os

import tessera_it as it


def test(ctx):
    bench = os.path.join(os.path.dirname(ctx.tessera), "tessera_bench")
    if not os.access(bench, os.X_OK):
        raise it.Skip(f"{bench} not built (TESSERA_BUILD_BENCH=OFF): no ceiling to compare with")
    train, test_file, _ = ctx.gen_ratings("planted", 100000, 20000, 10000000, rank=16, seed=2,
                                          timeout_s=300)
    records, res = ctx.train("defaults", ["--train", train, "--test", test_file], timeout_s=900)
    log = res.stderr + res.stdout
    it.check(it.grep(r"defaults chosen for about", log), "no start-up line names the chosen flags")
    it.check(it.grep(r"training ends here", log), "early stopping did not end the run\n" + res.tail())
    done = [r for r in records if r.get("event") == "done"][-1]
    final = it.final_rmse(records)

    grid_json = ctx.path("grid.jsonl")
    grid = it.run([bench, "--json", grid_json, "--train", train, "--test", test_file, "--dim", 32,
                   "--epochs", 30, "--grid-lr", "0.05,0.1", "--grid-l2", "0.02,0.05",
                   "ceiling-grid"], 900)
    it.expect_exit(grid, 0, "tessera_bench ceiling-grid")
    best = None
    with open(grid_json, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("bench") == "ceiling_grid_best":
                best = float(record["best_rmse"])
    it.check(best is not None, f"no ceiling_grid_best record in {grid_json}")
    print(f"defaults: test RMSE {final:.4f} after {done['epochs']} epochs; ceiling's best over "
          f"the grid {best:.4f}; limit {1.01 * best:.4f}")
    it.check(final <= 1.01 * best,
             f"default flags reach test RMSE {final:.4f} > 1.01 x the ceiling's {best:.4f}")


if __name__ == "__main__":
    it.main(test, __doc__)
