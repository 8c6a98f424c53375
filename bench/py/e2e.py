"""The README's main job written the way a practitioner writes it with PyTorch + albumentations.

    bench/.venv/bin/python bench/py/e2e.py --mnist datasets/mnist [--workers 2] [--seeds 3]

`pipelines/mnist-ablation.yaml` asks which augmentation ops and noise injections help a small MNIST
MLP. Here the same study is a plain script: the first 2,000 training images (10 % of them held out,
stratified, for early stopping) and the 10,000 test images; an `A.Compose` of the run file's four
ops applied per image in a `torch.utils.data.Dataset`, fed by a `DataLoader` with `--workers`
worker processes; a 784-256-128-10 ReLU MLP with Gaussian noise (std 0.1) on the first hidden
layer's output while training; Adam (lr 0.001), batches of 64, 30 epochs, early stopping on the
validation loss with patience 6 and the best epoch's weights restored; test accuracy. The variants
are the run file's: the baseline, each op left out in turn, no augmentation, no hidden-layer noise,
and neither noise; each over `--seeds` seeds paired with the baseline's (same seed, same split,
same initial weights), with a paired t interval and a Holm adjustment across the variants as whet
reports them.

Op by op (albumentations 2.x; whet's op on the right):
  A.Rotate(limit=12, bilinear, constant 0 border, p=0.7)      rotate: { degrees: 12, p: 0.7 }
  A.Affine(translate_px=(-2, 2), p=0.5)                        translate: { pixels: 2, p: 0.5 }
  A.ElasticTransform(alpha=34, sigma=4, uniform noise, p=0.5)  elastic: { alpha: 34, sigma: 4, p: 0.5 }
  A.GaussNoise(std_range=(0.1, 0.1), p=0.5)                    gaussian_noise: { std: 0.1, p: 0.5 }
(albumentations draws translations as whole pixels, whet as real-valued shifts.)

Prints one JSON line: `{"bench": "e2e-peer", "wall_s", "variants": [...], "runs": [...]}`.
The wall time counts everything after the imports: loading, every run, the statistics.
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OPS = ["rotate", "translate", "elastic", "gaussian_noise"]
HIDDEN_NOISE = 0.1


def variants():
    """(name, ops kept, hidden-layer noise) in the order whet's report lists them."""
    out = [("baseline", OPS, HIDDEN_NOISE)]
    out += [(f"no-{op}", [o for o in OPS if o != op], HIDDEN_NOISE) for op in OPS]
    out += [
        ("no-augment", [], HIDDEN_NOISE),
        ("no-hidden-noise", OPS, 0.0),
        ("no-noise-at-all", [o for o in OPS if o != "gaussian_noise"], 0.0),
    ]
    return out


def read_idx(path):
    import numpy as np

    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def build_transform(ops):
    import albumentations as A
    import cv2

    table = {
        "rotate": A.Rotate(limit=12, interpolation=cv2.INTER_LINEAR,
                           border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.7),
        "translate": A.Affine(translate_px=(-2, 2), interpolation=cv2.INTER_LINEAR,
                              border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
        "elastic": A.ElasticTransform(alpha=34, sigma=4, interpolation=cv2.INTER_LINEAR,
                                      noise_distribution="uniform",
                                      border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
        "gaussian_noise": A.GaussNoise(std_range=(0.1, 0.1), mean_range=(0.0, 0.0), p=0.5),
    }
    return A.Compose([table[o] for o in ops]) if ops else None


class Images:
    """A map-style dataset: uint8 images, augmented per item, returned as flat [0, 1] floats."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        import torch

        img = self.x[i]
        if self.transform is not None:
            img = self.transform(image=img)["image"]
        return torch.from_numpy(img.reshape(-1).astype("float32") / 255.0), int(self.y[i])


def seed_worker(_worker_id):
    """Each DataLoader worker seeds numpy, random and albumentations from torch's per-worker seed."""
    import random

    import numpy as np
    import torch

    info = torch.utils.data.get_worker_info()
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    if info.dataset.transform is not None:
        info.dataset.transform.set_random_seed(s)


def make_model(hidden_noise):
    import torch
    from torch import nn

    class Noise(nn.Module):
        def __init__(self, std):
            super().__init__()
            self.std = std

        def forward(self, x):
            if self.training and self.std > 0:
                return x + torch.randn_like(x) * self.std
            return x

    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), Noise(hidden_noise),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def evaluate(model, x, y):
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def one_run(data, ops, hidden_noise, seed, args):
    import copy

    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    x, y, xt, yt = data
    tr, va = train_test_split(np.arange(len(y)), test_size=0.1, stratify=y, random_state=seed)
    torch.manual_seed(seed)
    model = make_model(hidden_noise)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ds = Images(x[tr], y[tr], build_transform(ops))
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, shuffle=True, num_workers=args.workers, generator=gen,
        worker_init_fn=seed_worker if args.workers > 0 else None,
        persistent_workers=args.workers > 0,
    )
    if args.workers == 0 and ds.transform is not None:
        ds.transform.set_random_seed(seed)
    xv = torch.from_numpy(x[va].reshape(len(va), -1).astype("float32") / 255.0)
    yv = torch.from_numpy(y[va].astype("int64"))
    best, best_state, best_epoch, waited, epochs = math.inf, None, 0, 0, 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        epochs = epoch
        vloss, _ = evaluate(model, xv, yv)
        if vloss < best:
            best, best_state, best_epoch, waited = vloss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            waited += 1
            if waited >= args.patience:
                break
    del loader
    model.load_state_dict(best_state)
    loss, acc = evaluate(model, xt, yt)
    return {"accuracy": acc, "loss": loss, "epochs": epochs, "best_epoch": best_epoch}


def t_interval(diffs):
    """Mean, 95 % t interval and two-sided p of the mean (paired differences or plain values)."""
    from scipy import stats

    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return {"n": n, "mean": mean, "low": None, "high": None, "p": None}
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    q = stats.t.ppf(0.975, n - 1)
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return {"n": n, "mean": mean, "low": mean - q * se, "high": mean + q * se, "p": p}


def holm(ps):
    """Holm-Bonferroni adjusted p-values, in the input order (None stays None)."""
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    m, out, running = len(idx), [None] * len(ps), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def summarise(runs, names, seeds, metric):
    """Per variant (baseline first): the metric's mean and t interval over the seeds, and for the
    others the paired difference from the baseline, its Holm-adjusted p over the variants and the
    verdict (higher is better), as whet's report gives them."""
    value = {(r["variant"], r["seed"]): r[metric] for r in runs}
    summaries = []
    for name in names:
        s = {"name": name, "value": t_interval([value[(name, seed)] for seed in seeds])}
        if name != "baseline":
            s["delta"] = t_interval(
                [value[(name, seed)] - value[("baseline", seed)] for seed in seeds]
            )
        summaries.append(s)
    adjusted = holm([s["delta"]["p"] if "delta" in s else None for s in summaries])
    for s, ph in zip(summaries, adjusted):
        if "delta" in s:
            s["p_holm"] = ph
            s["verdict"] = ("no clear effect" if ph is None or ph >= 0.05
                            else "helps" if s["delta"]["mean"] > 0 else "hurts")
    return summaries


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mnist", required=True, help="folder with the four MNIST .gz files")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    args = ap.parse_args()

    import numpy as np
    import torch

    start = time.perf_counter()
    m = args.mnist
    x = read_idx(os.path.join(m, "train-images-idx3-ubyte.gz"))[: args.limit].copy()
    y = read_idx(os.path.join(m, "train-labels-idx1-ubyte.gz"))[: args.limit].astype(np.int64)
    xt = read_idx(os.path.join(m, "t10k-images-idx3-ubyte.gz"))
    yt = read_idx(os.path.join(m, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    xt = torch.from_numpy(xt.reshape(len(xt), -1).astype("float32") / 255.0)
    yt = torch.from_numpy(yt)
    data = (x, y, xt, yt)
    chosen = [v for v in variants() if not args.only or v[0] in args.only.split(",") + ["baseline"]]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    runs = []
    for seed in seeds:
        for name, ops, noise in chosen:
            t0 = time.perf_counter()
            r = one_run(data, ops, noise, seed, args)
            r.update({"variant": name, "seed": seed, "seconds": time.perf_counter() - t0})
            runs.append(r)
            common.log(f"e2e-peer: {name} seed {seed}: accuracy {r['accuracy']:.4f} "
                       f"({r['epochs']} epochs, {r['seconds']:.1f} s)")
    summaries = summarise(runs, [v[0] for v in chosen], seeds, "accuracy")
    common.emit({
        "bench": "e2e-peer",
        "metric": "accuracy",
        "job": "mnist",
        "engine": "pytorch+albumentations",
        "workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "seeds": seeds,
        "wall_s": time.perf_counter() - start,
        "variants": summaries,
        "runs": runs,
        "versions": {"torch": torch.__version__,
                     "albumentations": __import__("albumentations").__version__},
        "peak_rss_bytes": common.peak_rss_bytes(),
    })


if __name__ == "__main__":
    main()
