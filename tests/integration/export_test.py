#!/usr/bin/env python3
"""What `tessera export` writes, read back without Tessera (numpy), and `tessera recommend`.

Modes:
  --mode rmse       MF trained to a final checkpoint (2 servers, 2 workers) and exported: the
                    test RMSE recomputed in numpy from the exported .npy files (mu + b_u + b_i +
                    p_u . q_i, clipped to the training ratings' range, as the trainer predicts)
                    equals the trainer's final test RMSE within RMSE_TOLERANCE.
  --mode recommend  `tessera recommend --user ID` prints the top K items of the exported
                    model's scores (the argmax first; an unknown user gets the items ranked by
                    bias; K above the item count gives every item); the text export holds the
                    npy export's keys and values (MF rows: factors then bias; DeepFM: every table
                    and dense.txt) and a model.json naming the text files.
Data and training seeds are fixed (DATA_SEED, TRAIN_SEED) and printed on failure.
"""

import json
import os
import sys

import tessera_it as it

DATA_SEED = 6
TRAIN_SEED = 3
DIM = 16
# |numpy RMSE - trainer RMSE|: the trainer predicts in float32, numpy in float64; the difference
# is about 1e-8 here, and an export that lost the bias, the global mean or the last epoch's
# updates is off by 1e-2 or more.
RMSE_TOLERANCE = 1e-5


def np_module():
    try:
        import numpy  # Debian's python3-numpy (installed by scripts/install-deps.sh)
    except ImportError as e:
        raise it.Skip(f"numpy is not installed for {sys.executable}: {e}") from e
    return numpy


def train_mf(ctx, train, test, extra=()):
    """MF with a final checkpoint; returns (checkpoint dir, metrics records)."""
    ckpt = ctx.path("ckpt")
    metrics = ctx.path("metrics.jsonl")
    res = ctx.tessera_run(["train", "--train", train, "--test", test, "--epochs", 4,
                           "--batch-size", 256, "--dim", DIM, "--seed", TRAIN_SEED,
                           "--checkpoint-dir", ckpt, "--metrics-out", metrics] + list(extra), 300)
    it.expect_exit(res, 0, "MF training with a checkpoint")
    return ckpt, it.read_metrics(metrics)


def export(ctx, ckpt, name, fmt="npy"):
    out = ctx.path(name)
    res = ctx.tessera_run(["export", "--checkpoint", ckpt, "--out", out, "--format", fmt], 120)
    it.expect_exit(res, 0, f"tessera export --format {fmt}")
    with open(os.path.join(out, "model.json"), encoding="utf-8") as f:
        return out, json.load(f)


def load_mf(np, out, model):
    """{table name: (keys, embeddings, bias)} and mu of an MF npy export."""
    it.check(model["model"]["type"] == "mf", f"model.json: {model['model']}")
    arrays = {}
    for t in model["tables"]:
        arrays[t["name"]] = tuple(np.load(os.path.join(out, t[f])) for f in
                                  ("keys_file", "embeddings_file", "bias_file"))
    it.check(set(arrays) == {"user", "item"}, f"tables {sorted(arrays)}")
    return arrays, float(model["model"]["global_bias"])


def read_ratings(np, path):
    data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    return data[:, 0].astype(np.uint64), data[:, 1].astype(np.uint64), data[:, 2]


def rows_of(np, keys, wanted, what):
    """The row of every key in `wanted` (keys sorted, as the export writes them)."""
    rows = np.searchsorted(keys, wanted)
    rows = np.minimum(rows, len(keys) - 1)
    missing = np.count_nonzero(keys[rows] != wanted)
    it.check(missing == 0, f"{missing} test {what}s are not in the export (data seed "
                           f"{DATA_SEED}): the test needs every test id seen in training")
    return rows


def rmse_mode(ctx):
    np = np_module()
    train, test, _ = ctx.gen_ratings("data", 1500, 400, 60000, seed=DATA_SEED)
    ckpt, records = train_mf(ctx, train, test, ["--servers", 2, "--workers", 2])
    want = it.final_rmse(records)
    out, model = export(ctx, ckpt, "export")
    arrays, mu = load_mf(np, out, model)
    ukeys, uemb, ubias = arrays["user"]
    ikeys, iemb, ibias = arrays["item"]
    users, items, ratings = read_ratings(np, test)
    _, _, train_ratings = read_ratings(np, train)
    # The trainer clips predictions to the range of the training ratings (as float32).
    low = float(np.float32(train_ratings.min()))
    high = float(np.float32(train_ratings.max()))
    u = rows_of(np, ukeys, users, "user")
    i = rows_of(np, ikeys, items, "item")
    dots = np.einsum("nd,nd->n", uemb[u].astype(np.float64), iemb[i].astype(np.float64))
    predictions = np.clip(mu + ubias[u].astype(np.float64) + ibias[i] + dots, low, high)
    got = float(np.sqrt(np.mean((ratings - predictions) ** 2)))
    print(f"  test RMSE from the export {got:.9f}, the trainer's {want:.9f} "
          f"({len(ratings)} test ratings, step {model['step']})")
    it.check(abs(got - want) <= RMSE_TOLERANCE,
             f"the export's test RMSE {got:.9f} differs from the trainer's final {want:.9f} by "
             f"{abs(got - want):.3g} (> {RMSE_TOLERANCE}; data seed {DATA_SEED}, training seed "
             f"{TRAIN_SEED})")


def recommend(ctx, out, user, k):
    """`tessera recommend --user` as [(rank, item, score)]."""
    res = it.run([ctx.tessera, "recommend", "--export", out, "--user", user, "--k", k], 120)
    it.expect_exit(res, 0, f"tessera recommend --user {user} --k {k}")
    got = []
    for line in res.stdout.splitlines():
        fields = line.split("\t")
        it.check(len(fields) == 4 and int(fields[0]) == int(user),
                 f"recommend --user {user}: bad line {line!r}")
        got.append((int(fields[1]), int(fields[2]), float(fields[3])))
    return got, res


def check_top_k(np, name, got, scores, ikeys, k):
    order = np.lexsort((ikeys, -scores))[:k]  # best first; ties by key
    it.check(len(got) == min(k, len(ikeys)), f"{name}: {len(got)} lines for --k {k}")
    it.check(got[0][1] == int(ikeys[int(np.argmax(scores))]),
             f"{name}: first item {got[0][1]} is not the argmax {int(ikeys[np.argmax(scores)])}")
    want = [(r + 1, int(ikeys[j]), float(scores[j])) for r, j in enumerate(order)]
    it.check([g[:2] for g in got] == [w[:2] for w in want],
             f"{name}: recommend {got[:5]}... vs numpy {want[:5]}...")
    worst = max(abs(g[2] - w[2]) / max(1.0, abs(w[2])) for g, w in zip(got, want))
    it.check(worst <= 1e-6, f"{name}: scores differ by {worst:.3g} (relative)")


def recommend_mode(ctx):
    np = np_module()
    train, test, _ = ctx.gen_ratings("data", 600, 150, 15000, seed=DATA_SEED)
    ckpt, _ = train_mf(ctx, train, test)
    out, model = export(ctx, ckpt, "export")
    arrays, mu = load_mf(np, out, model)
    ukeys, uemb, ubias = arrays["user"]
    ikeys, iemb, ibias = arrays["item"]
    item_part = mu + ibias.astype(np.float64)
    # Known users: the top K is the order of mu + b_u + b_i + q_i . p_u over every item.
    for row in (0, len(ukeys) // 2, len(ukeys) - 1):
        user = int(ukeys[row])
        scores = item_part + float(ubias[row]) + iemb.astype(np.float64) @ uemb[row].astype(
            np.float64)
        got, _ = recommend(ctx, out, user, 10)
        check_top_k(np, f"user {user}", got, scores, ikeys, 10)
    # K above the item count: every item once, in score order.
    user = int(ukeys[1])
    scores = item_part + float(ubias[1]) + iemb.astype(np.float64) @ uemb[1].astype(np.float64)
    got, _ = recommend(ctx, out, user, len(ikeys) + 50)
    check_top_k(np, f"user {user}, all items", got, scores, ikeys, len(ikeys) + 50)
    it.check(sorted(g[1] for g in got) == sorted(int(k) for k in ikeys),
             f"user {user}: --k above the item count does not list every item once")
    # A user the export does not know: ranked by mu + b_i, with a warning.
    unknown = int(ukeys.max()) + 1000
    got, res = recommend(ctx, out, unknown, 5)
    check_top_k(np, f"unknown user {unknown}", got, item_part, ikeys, 5)
    it.check(f"user {unknown} is not in the export" in res.stderr,
             f"no warning about the unknown user {unknown}\n{res.tail()}")
    res = it.run([ctx.tessera, "recommend", "--export", out, "--user", "12x"], 60)
    it.expect_exit(res, 2, "recommend --user 12x")
    it.check("'12x' is not a user id" in res.stderr, f"--user 12x: {res.tail()}")
    print(f"  recommend --user == numpy top K for 3 users, all {len(ikeys)} items, an unknown "
          f"user")

    # The text export: same keys and values as the npy export, factors then the bias.
    text_out, text_model = export(ctx, ckpt, "text", "text")
    it.check(text_model["step"] == model["step"] and text_model["format"] == "tessera-export",
             f"text model.json: step {text_model.get('step')} vs {model['step']}")
    for t in text_model["tables"]:
        it.check(t.get("text_file") == f"{t['name']}.txt" and not t.get("keys_file"),
                 f"text model.json table {t}")
        keys, emb, bias = arrays[t["name"]]
        with open(os.path.join(text_out, t["text_file"]), encoding="utf-8") as f:
            lines = [line.split() for line in f]
        it.check(len(lines) == len(keys) == int(t["num_rows"]) and
                 all(len(fields) == DIM + 2 for fields in lines),
                 f"{t['text_file']}: {len(lines)} lines, expected {len(keys)} of {DIM + 2} fields")
        it.check([int(fields[0]) for fields in lines] == [int(k) for k in keys],
                 f"{t['text_file']}: keys differ from the npy export")
        values = np.array([[float(v) for v in fields[1:]] for fields in lines], dtype=np.float32)
        it.check(np.array_equal(values[:, :DIM], emb) and np.array_equal(values[:, DIM], bias),
                 f"{t['text_file']}: values differ from the npy export")
    res = it.run([ctx.tessera, "recommend", "--export", text_out, "--user", int(ukeys[0])], 60)
    it.expect_exit(res, 2, "recommend from a text export")
    it.check("--format npy" in res.stderr, f"recommend from a text export: {res.tail()}")

    # DeepFM: every table and the dense parameters, text against npy.
    data = ctx.path("criteo")
    res = ctx.tessera_run(["gen", "criteo", "--rows", 4000, "--seed", DATA_SEED, "--out", data],
                          120)
    it.expect_exit(res, 0, "tessera gen criteo")
    ckpt = ctx.path("ckpt-ctr")
    res = ctx.tessera_run(["train", "--model", "deepfm", "--train",
                           os.path.join(data, "train.tsv"), "--emb-dim", 4, "--mlp", "16",
                           "--batch-size", 512, "--epochs", 1, "--seed", TRAIN_SEED, "--checkpoint-dir", ckpt],
                          300)
    it.expect_exit(res, 0, "DeepFM training with a checkpoint")
    npy_out, npy_model = export(ctx, ckpt, "ctr-npy")
    text_out, text_model = export(ctx, ckpt, "ctr-text", "text")
    dense = np.load(os.path.join(npy_out, npy_model["dense_file"]))
    text_dense = np.loadtxt(os.path.join(text_out, text_model["dense_file"]), dtype=np.float64)
    it.check(text_model["dense_file"] == "dense.txt" and
             np.array_equal(text_dense.astype(np.float32), dense),
             f"dense.txt ({text_dense.shape}) differs from dense.npy ({dense.shape})")
    it.check(len(text_model["tables"]) == len(npy_model["tables"]) > 0, "table lists differ")
    for t, n in zip(text_model["tables"], npy_model["tables"]):
        keys = np.load(os.path.join(npy_out, n["keys_file"]))
        emb = np.load(os.path.join(npy_out, n["embeddings_file"]))
        text = np.loadtxt(os.path.join(text_out, t["text_file"]), dtype=np.float64, ndmin=2)
        with open(os.path.join(text_out, t["text_file"]), encoding="utf-8") as f:
            text_keys = [int(line.split()[0]) for line in f]
        it.check(text_keys == [int(k) for k in keys] and
                 np.array_equal(text[:, 1:].astype(np.float32), emb),
                 f"{t['name']}: the text export differs from the npy one")
    print(f"  text exports == npy exports (MF 2 tables; DeepFM {len(npy_model['tables'])} "
          f"tables and {len(dense)} dense parameters)")


MODES = {"rmse": rmse_mode, "recommend": recommend_mode}


def add_args(p):
    p.add_argument("--mode", choices=sorted(MODES), required=True)


if __name__ == "__main__":
    it.main(lambda ctx: MODES[ctx.args.mode](ctx), __doc__.splitlines()[0], add_args)
