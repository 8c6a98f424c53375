"""Training throughput of the Python peers, and the machine's fp32 matrix-multiply peak. JSON lines.

    bench/.venv/bin/python bench/py/train.py --engine torch --threads 1
    bench/.venv/bin/python bench/py/train.py --engine torch --model lenet --threads 1
    bench/.venv/bin/python bench/py/train.py --engine numpy --threads 2
    bench/.venv/bin/python bench/py/train.py --engine matmul-numpy --threads 1

Training: a 784-256-128-10 ReLU network, softmax cross-entropy, SGD with momentum 0.9 and learning
rate 0.01, mini-batches of 128 (the last one of each epoch has the 96 left over), reshuffled every
epoch, on 60,000 centred synthetic samples (`common.make_training_set`, identical in whet-bench).
The first epoch is reported on its own (`first_epoch_s`: allocation, first touch, warm-up); the
steady state is the median of the next `--epochs` epochs. `gflops` is the achieved rate, from the
exact FLOP count of one training step (forward, backward to the weights, backward to the inputs
of every layer but the first; 2 FLOP per multiply-add).

`--model lenet` (PyTorch only) trains a LeNet-5-like CNN on the same samples read as 28x28 grey
images ([N, 1, 28, 28]; whet-bench reads them as 28x28x1 channels-last, the same bytes):
Conv2d(1, 6, 5, padding=2), ReLU, MaxPool2d(2), Conv2d(6, 16, 5), ReLU, MaxPool2d(2), Flatten,
Linear(400, 120), ReLU, Linear(120, 84), ReLU, Linear(84, 10); the same loss, optimizer, batches
and timing. Its FLOP count (`LENET`, `lenet_flops_per_sample`) is the same rule with a
convolution's multiply-adds being out_h * out_w * k^2 * c_in * filters per sample; pooling is not
counted: 2,263,920 FLOP per sample (the MLP's: 1,007,104).

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
# Samples per epoch (--samples; the first N_USED of the N).
N_USED = N
BATCH = 128
LR = 0.01
MOMENTUM = 0.9

# The LeNet-5-like CNN's layers with weights, input side first: ("conv", out_h, out_w, k, c_in,
# filters) or ("dense", inputs, outputs). Pools (2x2, stride 2) sit after each conv.
LENET = [
    ("conv", 28, 28, 5, 1, 6),  # padding 2 ("same"): 28x28x6, pooled to 14x14x6
    ("conv", 10, 10, 5, 6, 16),  # valid: 10x10x16, pooled to 5x5x16 = 400
    ("dense", 400, 120),
    ("dense", 120, 84),
    ("dense", 84, 10),
]


def flops_per_sample():
    fwd = sum(2 * a * b for a, b in zip(LAYERS[:-1], LAYERS[1:]))
    grad_w = fwd
    grad_x = sum(2 * a * b for a, b in list(zip(LAYERS[:-1], LAYERS[1:]))[1:])
    return fwd + grad_w + grad_x


def lenet_macs():
    """Forward multiply-adds per sample of each layer with weights of LENET."""
    out = []
    for layer in LENET:
        if layer[0] == "conv":
            _, oh, ow, k, cin, filters = layer
            out.append(oh * ow * k * k * cin * filters)
        else:
            out.append(layer[1] * layer[2])
    return out


def lenet_flops_per_sample():
    """Forward + weight gradients (as many) + input gradients of every layer but the first."""
    macs = lenet_macs()
    return 2 * sum(2 * m for m in macs) + sum(2 * m for m in macs[1:])


def blas_info():
    from threadpoolctl import threadpool_info

    return [
        {k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for i in threadpool_info()
    ]


def epoch_windows(run_epoch, epochs, max_other, retries, flops=None):
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
    flops = flops_per_sample() if flops is None else flops
    return {
        "first_epoch_s": first.wall,
        "first_other_cores": round(first.other_cores, 3),
        "epoch_s": times,
        "median_epoch_s": med,
        "samples_per_s": N_USED / med,
        "gflops": N_USED / med * flops / 1e9,
        "other_cores": others,
        "retried": retried,
        "mean_loss_per_epoch": losses,
    }


def torch_sgd_run(model, xt, yt, threads, epochs, max_other, retries, flops=None):
    """Trains `model` on `xt`, `yt` with SGD momentum in shuffled batches of BATCH, gathered by
    index each step as a DataLoader would, timed by `epoch_windows`."""
    import torch
    from torch import nn

    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(4)

    def run_epoch(_epoch):
        perm = torch.randperm(N_USED, generator=gen)
        total = 0.0
        for s in range(0, N_USED, BATCH):
            idx = perm[s : s + BATCH]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / N_USED

    r = epoch_windows(run_epoch, epochs, max_other, retries, flops)
    r["library_threads"] = {
        "torch.get_num_threads": torch.get_num_threads(),
        "torch.get_num_interop_threads": torch.get_num_interop_threads(),
        "torch.backends.mkldnn.is_available": torch.backends.mkldnn.is_available(),
        "blas": blas_info(),
    }
    r["versions"] = {"torch": torch.__version__}
    return r


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
    return torch_sgd_run(model, xt, yt, threads, epochs, max_other, retries)


def train_torch_lenet(x, labels, threads, epochs, max_other, retries):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    # The 784 features of a sample are a 28x28 grey image (row-major), as whet-bench reads them.
    xt = torch.from_numpy(x).reshape(N_USED, 1, 28, 28)
    yt = torch.from_numpy(labels)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )
    return torch_sgd_run(
        model, xt, yt, threads, epochs, max_other, retries, lenet_flops_per_sample()
    )


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
        perm = order_rng.permutation(N_USED)
        total = 0.0
        for s in range(0, N_USED, BATCH):
            idx = perm[s : s + BATCH]
            total += step(x[idx], labels[idx]) * len(idx)
        return total / N_USED

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
    ap.add_argument(
        "--model",
        choices=["mlp", "lenet"],
        default="mlp",
        help="mlp: 784-256-128-10; lenet: the LeNet-5-like CNN on 28x28 (engine torch only)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    ap.add_argument("--n", type=int, default=2048, help="matrix side for matmul")
    ap.add_argument("--repeats", type=int, default=5, help="matmul repeats")
    ap.add_argument("--max-other", type=float, default=0.1)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--width", type=int, default=0,
                    help="both hidden layers of the MLP (784-W-W-10; 0: 784-256-128-10)")
    ap.add_argument("--samples", type=int, default=N,
                    help="training samples per epoch (the first of the 60,000)")
    args = ap.parse_args()
    if args.model == "lenet" and args.engine != "torch":
        ap.error("--model lenet has a PyTorch peer only (--engine torch)")
    if args.width and args.model != "mlp":
        ap.error("--width applies to the MLP only")
    if not BATCH <= args.samples <= N:
        ap.error(f"--samples must be between {BATCH} and {N}")
    # The scaling curve's network and epoch length (module-wide, as the functions read them).
    global LAYERS, N_USED
    if args.width:
        LAYERS = [784, args.width, args.width, 10]
    N_USED = args.samples
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
    x, labels = x[:N_USED], labels[:N_USED]
    if args.model == "lenet":
        r = train_torch_lenet(x, labels, args.threads, args.epochs, args.max_other, args.retries)
        common.emit(
            {
                "bench": "train",
                "model": "lenet",
                **base,
                "layers": [list(layer) for layer in LENET],
                "input_shape": [28, 28, 1],
                "batch": BATCH,
                "samples": N_USED,
                "flops_per_sample": lenet_flops_per_sample(),
                **r,
            }
        )
        return
    fn = train_torch if args.engine == "torch" else train_numpy
    r = fn(x, labels, args.threads, args.epochs, args.max_other, args.retries)
    common.emit(
        {
            "bench": "train",
            "model": "mlp",
            **base,
            "layers": LAYERS,
            "batch": BATCH,
            "samples": N_USED,
            "flops_per_sample": flops_per_sample(),
            **r,
        }
    )


if __name__ == "__main__":
    main()
