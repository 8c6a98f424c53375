"""Training throughput of the Python peers, and the machine's fp32 matrix-multiply peak. JSON lines.

    bench/.venv/bin/python bench/py/train.py --engine torch --threads 1
    bench/.venv/bin/python bench/py/train.py --engine numpy --threads 2
    bench/.venv/bin/python bench/py/train.py --engine matmul-numpy --threads 1

Training: a 784-256-128-10 ReLU network, softmax cross-entropy, SGD with momentum 0.9 and learning
rate 0.01, mini-batches of 128 (the last one of each epoch has the 96 left over), reshuffled every
epoch, on 60,000 centred synthetic samples (`common.make_training_set`, identical in whet-bench).
The first epoch is reported on its own (`first_epoch_s`: allocation, first touch, warm-up); the
steady state is the median of the next `--epochs` epochs. `gflops` is the achieved rate, from the
exact FLOP count of one training step (forward, backward to the weights, backward to the inputs
of every layer but the first; 2 FLOP per multiply-add).

Engines: `torch` (nn.Sequential, torch.optim.SGD, batches gathered by index each step as a
DataLoader would), `numpy` (a plain NumPy/OpenBLAS implementation of the same network with
preallocated buffers), `matmul-numpy` and `matmul-torch` (C = A @ B, fp32, 2048 x 2048, GFLOP/s
= 2 n^3 / s: the machine's practical peak for this work).
Threads are set explicitly (OMP/OpenBLAS/MKL variables before import, torch.set_num_threads) and
the values the libraries report are printed.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

LAYERS = [784, 256, 128, 10]
N = 60_000
BATCH = 128
LR = 0.01
MOMENTUM = 0.9


def flops_per_sample():
    fwd = sum(2 * a * b for a, b in zip(LAYERS[:-1], LAYERS[1:]))
    grad_w = fwd
    grad_x = sum(2 * a * b for a, b in list(zip(LAYERS[:-1], LAYERS[1:]))[1:])
    return fwd + grad_w + grad_x


def blas_info():
    from threadpoolctl import threadpool_info

    return [
        {k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for i in threadpool_info()
    ]


def epoch_windows(run_epoch, epochs, max_other, retries):
    """Times the first epoch, then `epochs` more (each retried when others used the CPU)."""
    with common.Window() as first:
        loss = run_epoch(0)
    times, others, retried, e, losses = [], [], 0, 1, [loss]
    while len(times) < epochs:
        with common.Window() as w:
            loss = run_epoch(e)
        e += 1
        losses.append(loss)
        if w.other_cores > max_other and retried < retries:
            retried += 1
            time.sleep(1.0)
            continue
        times.append(w.wall)
        others.append(round(w.other_cores, 3))
    med = common.median(times)
    return {
        "first_epoch_s": first.wall,
        "first_other_cores": round(first.other_cores, 3),
        "epoch_s": times,
        "median_epoch_s": med,
        "samples_per_s": N / med,
        "gflops": N / med * flops_per_sample() / 1e9,
        "other_cores": others,
        "retried": retried,
        "mean_loss_per_epoch": losses,
    }


def train_torch(x, labels, threads, epochs, max_other, retries):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(labels)
    mods = []
    for i, (a, b) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(LAYERS) - 2:
            mods.append(nn.ReLU())
    model = nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(4)

    def run_epoch(_epoch):
        perm = torch.randperm(N, generator=gen)
        total = 0.0
        for s in range(0, N, BATCH):
            idx = perm[s : s + BATCH]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / N

    r = epoch_windows(run_epoch, epochs, max_other, retries)
    r["library_threads"] = {
        "torch.get_num_threads": torch.get_num_threads(),
        "torch.get_num_interop_threads": torch.get_num_interop_threads(),
        "blas": blas_info(),
    }
    r["versions"] = {"torch": torch.__version__}
    return r


def train_numpy(x, labels, threads, epochs, max_other, retries):
    import numpy as np

    rng = np.random.default_rng(3)
    ws, bs, vws, vbs = [], [], [], []
    for a, b in zip(LAYERS[:-1], LAYERS[1:]):
        bound = np.sqrt(6.0 / a)  # He uniform
        ws.append(rng.uniform(-bound, bound, size=(a, b)).astype(np.float32))
        bs.append(np.zeros(b, dtype=np.float32))
        vws.append(np.zeros((a, b), dtype=np.float32))
        vbs.append(np.zeros(b, dtype=np.float32))
    nl = len(ws)
    onehot_rows = np.eye(LAYERS[-1], dtype=np.float32)

    def step(xb, yb):
        m = xb.shape[0]
        acts = [xb]
        h = xb
        for i in range(nl):
            z = h @ ws[i]
            z += bs[i]
            if i < nl - 1:
                np.maximum(z, 0.0, out=z)
            acts.append(z)
            h = z
        logits = acts[-1]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(np.maximum(p[np.arange(m), yb], 1e-30)).mean()
        g = p
        g -= onehot_rows[yb]
        g *= 1.0 / m
        for i in range(nl - 1, -1, -1):
            gw = acts[i].T @ g
            gb = g.sum(axis=0)
            if i > 0:
                g = g @ ws[i].T
                g *= acts[i] > 0
            vws[i] *= MOMENTUM
            vws[i] += gw
            vbs[i] *= MOMENTUM
            vbs[i] += gb
            ws[i] -= LR * vws[i]
            bs[i] -= LR * vbs[i]
        return float(loss)

    order_rng = np.random.default_rng(4)

    def run_epoch(_epoch):
        perm = order_rng.permutation(N)
        total = 0.0
        for s in range(0, N, BATCH):
            idx = perm[s : s + BATCH]
            total += step(x[idx], labels[idx]) * len(idx)
        return total / N

    r = epoch_windows(run_epoch, epochs, max_other, retries)
    r["library_threads"] = {"blas": blas_info()}
    r["versions"] = {"numpy": np.__version__}
    return r


def matmul(engine, threads, n, repeats, max_other, retries):
    import numpy as np

    a = common.unit(common.h32(7, 90, np.arange(n * n, dtype=np.uint64), 0, 0)).astype(np.float32)
    b = common.unit(common.h32(7, 91, np.arange(n * n, dtype=np.uint64), 0, 0)).astype(np.float32)
    a, b = a.reshape(n, n), b.reshape(n, n)
    if engine == "matmul-torch":
        import torch

        torch.set_num_threads(threads)
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        c = torch.empty((n, n), dtype=torch.float32)

        def mm():
            torch.matmul(a, b, out=c)

        lib = {"torch.get_num_threads": torch.get_num_threads(), "blas": blas_info()}
        ver = {"torch": torch.__version__}
    else:
        c = np.empty((n, n), dtype=np.float32)

        def mm():
            np.matmul(a, b, out=c)

        lib = {"blas": blas_info()}
        ver = {"numpy": np.__version__}
    with common.Window() as first:
        mm()
    reps = max(1, int(0.5 / max(first.wall, 1e-6)))
    rates, others, retried = [], [], 0
    while len(rates) < repeats:
        with common.Window() as w:
            for _ in range(reps):
                mm()
        if w.other_cores > max_other and retried < retries:
            retried += 1
            time.sleep(1.0)
            continue
        rates.append(2.0 * n**3 * reps / w.wall / 1e9)
        others.append(round(w.other_cores, 3))
    return {
        "n": n,
        "first_gflops": 2.0 * n**3 / first.wall / 1e9,
        "gflops_runs": rates,
        "gflops": common.median(rates),
        "other_cores": others,
        "retried": retried,
        "library_threads": lib,
        "versions": ver,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--engine", choices=["torch", "numpy", "matmul-numpy", "matmul-torch"], required=True
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    ap.add_argument("--n", type=int, default=2048, help="matrix side for matmul")
    ap.add_argument("--repeats", type=int, default=5, help="matmul repeats")
    ap.add_argument("--max-other", type=float, default=0.1)
    ap.add_argument("--retries", type=int, default=2)
    args = ap.parse_args()
    env = common.set_thread_env(args.threads)
    base = {
        "engine": args.engine,
        "threads": args.threads,
        "env": env,
        "python": sys.version.split()[0],
    }
    if args.engine.startswith("matmul"):
        r = matmul(args.engine, args.threads, args.n, args.repeats, args.max_other, args.retries)
        common.emit({"bench": "matmul", **base, **r})
        return
    x, labels = common.make_training_set(args.seed, N, LAYERS[0], LAYERS[-1])
    fn = train_torch if args.engine == "torch" else train_numpy
    r = fn(x, labels, args.threads, args.epochs, args.max_other, args.retries)
    common.emit(
        {
            "bench": "train",
            **base,
            "layers": LAYERS,
            "batch": BATCH,
            "samples": N,
            "flops_per_sample": flops_per_sample(),
            **r,
        }
    )


if __name__ == "__main__":
    main()
