#!/usr/bin/python3
"""PyTorch baseline for bench/run_mf_bench.sh: biased MF on the same LIBMF files as tessera.

Model and update match `tessera train --model mf`: r_hat = mu + b_u + b_i + p_u . q_i, loss per
batch = sum over samples of 0.5 * e^2 + 0.5 * l2 * (|p_u|^2 + |q_i|^2) + 0.5 * l2_bias *
(b_u^2 + b_i^2) (summed, not averaged, as tessera's kernel sums per-row gradients), Adagrad on
the embedding rows (torch.optim.Adagrad, which takes sparse gradients), factors initialised
N(0, init_std^2), biases 0, a fresh shuffle every epoch, predictions clipped to the training
range for the test RMSE.

Differences, all in PyTorch's favour: ids are mapped to dense indices up front (tessera keeps
uint64 keys and hashes them on the servers), the data sits in one process's tensors (no
parameter server, no messages), and reading/mapping the file is not timed. Only the training
loop is timed, as tessera's samples_per_sec is.

Prints one JSON line per epoch and a final one (event "done") on stdout.
Needs Debian's python3-torch and python3-numpy (run with /usr/bin/python3).
"""
import argparse
import json
import time

import numpy as np
import torch


def read_libmf(path):
    """user item rating per line -> (users int64, items int64, ratings float32)."""
    flat = np.fromfile(path, sep=" ")
    table = flat.reshape(-1, 3)
    return (table[:, 0].astype(np.int64), table[:, 1].astype(np.int64),
            table[:, 2].astype(np.float32))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True)
    p.add_argument("--test", default="")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16384)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--l2", type=float, default=0.02)
    p.add_argument("--l2-bias", type=float, default=0.01)
    p.add_argument("--init-std", type=float, default=0.1)
    p.add_argument("--eps", type=float, default=1e-8, help="Adagrad epsilon (tessera: 1e-8)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-ratings", type=int, default=0,
                   help="train on the first N ratings only (0 = all); rates are per rating run")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    users, items, ratings = read_libmf(a.train)
    if a.max_ratings > 0:
        users, items, ratings = users[:a.max_ratings], items[:a.max_ratings], ratings[:a.max_ratings]
    if a.test:
        tu, ti, tr = read_libmf(a.test)
    else:
        tu = ti = np.zeros(0, np.int64)
        tr = np.zeros(0, np.float32)
    # Dense indices over train + test ids (unseen test ids keep their initial rows, as tessera's
    # pull without create returns initial weights).
    uid, uinv = np.unique(np.concatenate([users, tu]), return_inverse=True)
    iid, iinv = np.unique(np.concatenate([items, ti]), return_inverse=True)
    n = len(users)
    u_all = torch.from_numpy(uinv[:n].astype(np.int64))
    i_all = torch.from_numpy(iinv[:n].astype(np.int64))
    r_all = torch.from_numpy(ratings)
    u_test = torch.from_numpy(uinv[n:].astype(np.int64))
    i_test = torch.from_numpy(iinv[n:].astype(np.int64))
    r_test = torch.from_numpy(tr)
    read_seconds = time.perf_counter() - t0

    P = torch.nn.Embedding(len(uid), a.dim, sparse=True)
    Q = torch.nn.Embedding(len(iid), a.dim, sparse=True)
    BU = torch.nn.Embedding(len(uid), 1, sparse=True)
    BI = torch.nn.Embedding(len(iid), 1, sparse=True)
    with torch.no_grad():
        P.weight.normal_(0, a.init_std)
        Q.weight.normal_(0, a.init_std)
        BU.weight.zero_()
        BI.weight.zero_()
    mu = float(r_all.mean())
    lo, hi = float(r_all.min()), float(r_all.max())
    opt = torch.optim.Adagrad(list(P.parameters()) + list(Q.parameters()) +
                              list(BU.parameters()) + list(BI.parameters()),
                              lr=a.lr, eps=a.eps)

    def rmse():
        if len(r_test) == 0:
            return None
        with torch.no_grad():
            se = 0.0
            for b in range(0, len(r_test), 65536):
                u, i, r = u_test[b:b + 65536], i_test[b:b + 65536], r_test[b:b + 65536]
                pred = mu + BU(u).squeeze(1) + BI(i).squeeze(1) + (P(u) * Q(i)).sum(1)
                se += float(((r - pred.clamp(lo, hi)) ** 2).sum())
            return (se / len(r_test)) ** 0.5

    rates = []
    for epoch in range(1, a.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(n)
        loss_sum = 0.0
        for b in range(0, n, a.batch_size):
            idx = order[b:b + a.batch_size]
            u, i, r = u_all[idx], i_all[idx], r_all[idx]
            pu, qi, bu, bi = P(u), Q(i), BU(u).squeeze(1), BI(i).squeeze(1)
            err = r - (mu + bu + bi + (pu * qi).sum(1))
            sq = (err * err).sum()
            loss = 0.5 * sq + 0.5 * a.l2 * ((pu * pu).sum() + (qi * qi).sum()) + \
                0.5 * a.l2_bias * ((bu * bu).sum() + (bi * bi).sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(sq)
        seconds = time.perf_counter() - start
        rates.append(n / seconds)
        test = rmse()
        print(json.dumps({"event": "train", "epoch": epoch, "loss": loss_sum / n,
                          "samples_per_sec": n / seconds, "seconds": seconds,
                          "test_rmse": test}), flush=True)
    print(json.dumps({"event": "done", "framework": "pytorch " + torch.__version__,
                      "threads": a.threads, "dim": a.dim, "batch_size": a.batch_size,
                      "ratings": n, "read_seconds": read_seconds,
                      "samples_per_sec": rates[-1], "samples_per_sec_first": rates[0],
                      "test_rmse": rmse()}), flush=True)


if __name__ == "__main__":
    main()
