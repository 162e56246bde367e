#!/usr/bin/env python3
"""`tessera train` with no arguments trains on a generated planted set and exits 0.

stderr shows per-epoch progress and a final line with the test RMSE next to the noise floor.
"""

import tessera_it as it

# Loose sanity bound: the demo must learn the planted model, not merely predict the mean.
SANITY_FACTOR = 1.5


def test(ctx):
    res = ctx.tessera_run(["train"], 300)
    it.expect_exit(res, 0, "tessera train (no arguments)")
    progress = [l for l in res.stderr.splitlines() if it.grep(r"\bepoch \d+/\d+\b", l)]
    it.check(progress, f"no progress lines ('epoch N/M') on stderr\n{res.tail()}")
    final = it.grep(r"^.*final test RMSE ([0-9.]+).*noise floor ([0-9.]+).*$", res.stderr)
    it.check(final, f"no final line naming the test RMSE and the noise floor\n{res.tail()}")
    rmse, floor = float(final.group(1)), float(final.group(2))
    print(f"{len(progress)} progress lines; final line: {final.group(0)}")
    it.check(floor > 0 and rmse <= SANITY_FACTOR * floor,
             f"final test RMSE {rmse} is not within {SANITY_FACTOR} x the noise floor {floor}")


if __name__ == "__main__":
    it.main(test, __doc__)
