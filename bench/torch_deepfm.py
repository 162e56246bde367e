#!/usr/bin/python3
"""PyTorch baseline for bench/run_ctr_bench.sh: DeepFM or DCN-v2 on the same Criteo TSV files as
tessera.

Model as `tessera train --model deepfm`: logit = bias + sum_f w1[f, c_f] + <w_dense, dense> +
FM(field embeddings) + MLP([26 x D embeddings, 13 dense] -> 400 -> 400 -> 400 -> 1, ReLU),
logistic loss averaged over the batch. Dense features log(1 + max(I, 0)), 0 when missing.

Embeddings: ONE shared nn.Embedding(sparse=True) over (field, value) ids mapped densely up front
(each field's distinct training values get consecutive ids; a value first seen in the test set
maps to one per-field "unseen" row that training never updates), initialised N(0, 0.01^2) as
tessera's --init-std default. First-order weights: a shared nn.Embedding(n, 1, sparse=True) at 0.
Optimizers: torch.optim.SparseAdam (lr 0.001) on both sparse tables (the benchmark runs tessera
with lazy Adam at lr 0.001 on both tables too: `--linear-optimizer adam --linear-lr 0.001`
instead of its FTRL default), torch.optim.Adam (lr 0.001) on the dense part
(bias, dense weights, MLP; Xavier-uniform weights as tessera). Batch 4096, the training file in
file order (tessera reads it in order too), 1 epoch.

--model dcn_v2, as `tessera train --model dcn_v2`: no first-order table; x0 = [26 x D embeddings,
13 dense]; --cross-layers full-rank cross layers x_{l+1} = x0 * (x_l W + b) + x_l beside the MLP
on x0; logit = bias + <w_dense, dense> + [x_L, MLP(x0)] w_out (no output bias); Adam at lr 0.001
on the embeddings (SparseAdam) and the dense part.

Differences, in PyTorch's favour: ids are dense indices (tessera hashes uint64 keys on its
servers), everything sits in one process's tensors (no parameter server, no messages), reading
and mapping the file is not timed. Only the training loop is timed (samples_per_sec), as
tessera's is. torch.set_num_threads(--threads) (2 on these machines).

Prints one JSON line (event "done") on stdout. AUC by the rank formula with ties (numpy).
Needs Debian's python3-torch and python3-numpy (run with /usr/bin/python3).
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
from torch import nn

NUM_DENSE = 13
NUM_FIELDS = 26


def read_criteo(path, maps, grow, max_rows=0):
    """-> labels float32 (N), dense float32 (N x 13), ids int64 (N x 26) in the shared id space.
    maps: per-field dict value -> local id; grow: add unseen values (train) or send them to the
    field's unseen row (test, local id -1 -> resolved by the caller)."""
    labels, dense, cats = [], [], []
    log1p = math.log1p
    with open(path, "r") as f:
        for n, line in enumerate(f):
            if max_rows and n >= max_rows:
                break
            parts = line.rstrip("\n").split("\t")
            labels.append(float(parts[0]))
            dense.append([log1p(max(int(v), 0)) if v else 0.0 for v in parts[1:14]])
            row = []
            for k in range(NUM_FIELDS):
                m = maps[k]
                v = parts[14 + k].lower()
                i = m.get(v)
                if i is None:
                    if grow:
                        i = len(m)
                        m[v] = i
                    else:
                        i = -1
                row.append(i)
            cats.append(row)
    return (np.asarray(labels, dtype=np.float32), np.asarray(dense, dtype=np.float32),
            np.asarray(cats, dtype=np.int64))


def auc(labels, scores):
    """Rank-sum AUC with average ranks for ties."""
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    # average ranks over runs of equal scores
    bounds = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(s)]))
    avg = (starts + ends + 1) / 2.0  # 1-based mean rank of [start, end)
    ranks[order] = np.repeat(avg, ends - starts)
    pos = labels > 0.5
    n_pos = int(pos.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def linear(n_in, n_out, bias=True):
    """nn.Linear with tessera's initialisation: Xavier-uniform weights, zero bias."""
    layer = nn.Linear(n_in, n_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def relu_tower(width, mlp):
    """-> (the layers of the ReLU MLP on `width` inputs, its output width)."""
    layers = []
    for w in mlp:
        layers += [linear(width, w), nn.ReLU()]
        width = w
    return layers, width


class DeepFM(nn.Module):
    def __init__(self, num_ids, dim, mlp, init_std):
        super().__init__()
        self.emb = nn.Embedding(num_ids, dim, sparse=True)
        nn.init.normal_(self.emb.weight, 0.0, init_std)
        self.lin = nn.Embedding(num_ids, 1, sparse=True)
        nn.init.zeros_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(1))
        self.dense_w = nn.Linear(NUM_DENSE, 1, bias=False)
        nn.init.zeros_(self.dense_w.weight)
        layers, width = relu_tower(NUM_FIELDS * dim + NUM_DENSE, mlp)
        layers.append(linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, ids, dense):
        e = self.emb(ids)  # B x F x D
        first = self.lin(ids).sum(dim=(1, 2))
        s = e.sum(dim=1)
        fm = 0.5 * (s * s - (e * e).sum(dim=1)).sum(dim=1)
        deep = self.mlp(torch.cat([e.flatten(1), dense], dim=1)).squeeze(1)
        return self.bias + first + self.dense_w(dense).squeeze(1) + fm + deep


class DcnV2(nn.Module):
    def __init__(self, num_ids, dim, mlp, init_std, cross_layers):
        super().__init__()
        self.emb = nn.Embedding(num_ids, dim, sparse=True)
        nn.init.normal_(self.emb.weight, 0.0, init_std)
        self.lin = None  # no first-order table, as tessera's dcn_v2
        self.bias = nn.Parameter(torch.zeros(1))
        self.dense_w = nn.Linear(NUM_DENSE, 1, bias=False)
        nn.init.zeros_(self.dense_w.weight)
        x0_dim = NUM_FIELDS * dim + NUM_DENSE
        self.cross = nn.ModuleList()
        for _ in range(cross_layers):
            self.cross.append(linear(x0_dim, x0_dim))
        layers, width = relu_tower(x0_dim, mlp)
        self.mlp = nn.Sequential(*layers)
        self.out = linear(x0_dim + width, 1, bias=False)

    def forward(self, ids, dense):
        x0 = torch.cat([self.emb(ids).flatten(1), dense], dim=1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        deep = self.out(torch.cat([x, self.mlp(x0)], dim=1)).squeeze(1)
        return self.bias + self.dense_w(dense).squeeze(1) + deep


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--model", choices=["deepfm", "dcn_v2"], default="deepfm")
    p.add_argument("--cross-layers", type=int, default=3)
    p.add_argument("--emb-dim", type=int, default=16)
    p.add_argument("--mlp", default="400,400,400")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--init-std", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-rows", type=int, default=0, help="train on the first N rows (0 = all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--flush-denormal", type=int, default=1,
                   help="1: torch.set_flush_denormal(True) (see the docstring)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.flush_denormal:
        torch.set_flush_denormal(True)
    torch.manual_seed(a.seed)

    t0 = time.time()
    maps = [dict() for _ in range(NUM_FIELDS)]
    y_tr, d_tr, c_tr = read_criteo(a.train, maps, True, a.max_rows)
    y_te, d_te, c_te = read_criteo(a.test, maps, False)
    # Shared id space: field k's ids start at offset[k]; its last id (size[k]) is "unseen".
    sizes = np.array([len(m) + 1 for m in maps], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    c_te = np.where(c_te < 0, sizes - 1, c_te)
    c_tr += offsets
    c_te += offsets
    num_ids = int(sizes.sum())
    read_s = time.time() - t0

    widths = [int(w) for w in a.mlp.split(",")]
    if a.model == "dcn_v2":
        model = DcnV2(num_ids, a.emb_dim, widths, a.init_std, a.cross_layers)
    else:
        model = DeepFM(num_ids, a.emb_dim, widths, a.init_std)
    sparse = [model.emb.weight] + ([model.lin.weight] if model.lin is not None else [])
    dense_params = [q for n, q in model.named_parameters() if not n.startswith(("emb.", "lin."))]
    opt_sparse = torch.optim.SparseAdam(sparse, lr=a.lr)
    opt_dense = torch.optim.Adam(dense_params, lr=a.lr)
    loss_fn = nn.BCEWithLogitsLoss()

    yt, dt, ct = torch.from_numpy(y_tr), torch.from_numpy(d_tr), torch.from_numpy(c_tr)
    n, bs = len(y_tr), a.batch_size
    model.train()
    t1 = time.time()
    step = 0
    for _ in range(a.epochs):
        for s in range(0, n, bs):
            step += 1
            if step % 25 == 0:  # progress on stderr: a slowdown over the epoch shows here
                print("step %d: %.0f samples/s so far, load %s" % (
                    step, step * bs / (time.time() - t1), open("/proc/loadavg").read().split()[0]),
                    file=sys.stderr, flush=True)
            logits = model(ct[s:s + bs], dt[s:s + bs])
            loss = loss_fn(logits, yt[s:s + bs])
            opt_sparse.zero_grad(set_to_none=True)
            opt_dense.zero_grad(set_to_none=True)
            loss.backward()
            opt_sparse.step()
            opt_dense.step()
    train_s = time.time() - t1

    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(torch.from_numpy(c_te[s:s + 65536]), torch.from_numpy(d_te[s:s + 65536]))
                            for s in range(0, len(y_te), 65536)]).numpy().astype(np.float64)
    p_te = 1.0 / (1.0 + np.exp(-scores))
    eps = 1e-7
    logloss = float(-np.mean(y_te * np.log(np.clip(p_te, eps, 1)) +
                             (1 - y_te) * np.log(np.clip(1 - p_te, eps, 1))))
    print(json.dumps({"event": "done", "framework": "pytorch", "model": a.model,
                      "torch": torch.__version__,
                      "threads": a.threads, "train_rows": n, "epochs": a.epochs,
                      "num_ids": num_ids, "read_seconds": round(read_s, 2),
                      "train_seconds": round(train_s, 3),
                      "samples_per_sec": n * a.epochs / train_s,
                      "auc": auc(y_te, scores), "logloss": logloss}), flush=True)


if __name__ == "__main__":
    main()
