"""`pipelines/flights-ablation.yaml` written the way a practitioner writes it with pandas +
scikit-learn + PyTorch.

    bench/.venv/bin/python bench/py/e2e_flights.py --data datasets/nycflights13 [--seeds 3]

The run file asks what the joins and the missing-value strategy contribute to predicting whether a
flight arrives more than 15 minutes late. Here: pandas reads the three tables, left-joins the
weather at the origin in that hour (`origin`, `time_hour`, clashing names suffixed `_right`) and
the plane (`tailnum`, suffix `_plane`), drops the excluded columns and the flights without an
arrival delay, and splits by time (the earliest 70 % train, the next 10 % validation, the latest
20 % test); a scikit-learn `ColumnTransformer` fitted on the training rows imputes numeric columns
with the median (plus missing indicators for the columns missing on train) and z-scores them, and
one-hot encodes `carrier` and `origin` (the 20 most frequent training levels, the rest in one
"other" column); the other text columns are left out, as whet leaves out non-numeric columns.
A 64-32 ReLU MLP with one logit is trained with Adam (lr 0.001) on batches of 256 for 6 epochs
(a `TensorDataset` and a shuffling `DataLoader`), and scored by test ROC AUC. Variants as in the
run file: without the weather join, without the planes join, without both, mean instead of
median, no indicators, and rows with any missing value dropped (before the split) instead of
imputing; each over `--seeds` seeds paired with the baseline's, paired t intervals and a Holm
adjustment across the variants as whet reports them.

Prints one JSON line: `{"bench": "e2e-peer", "job": "flights", "wall_s", "variants", "runs"}`.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from e2e import summarise  # noqa: E402

EXCLUDE = ["arr_time", "sched_arr_time", "dep_delay", "dep_time", "air_time", "year", "flight",
           "minute"]
ONE_HOT = ["carrier", "origin"]


def variants():
    """(name, weather join, planes join, missing-value handling, indicators)."""
    return [
        ("baseline", True, True, "median", True),
        ("no-weather", False, True, "median", True),
        ("no-planes", True, False, "median", True),
        ("no-joins", False, False, "median", True),
        ("impute-mean", True, True, "mean", True),
        ("no-indicators", True, True, "median", False),
        ("drop-missing-rows", True, True, "drop", True),
    ]


def prepare(tables, weather, planes, missing, indicators):
    """(x_train, y_train, x_val, y_val, x_test, y_test) as float32 / float32 arrays."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df = tables["flights"]
    if weather:
        df = df.merge(tables["weather"], on=["origin", "time_hour"], how="left",
                      suffixes=("", "_right"), validate="many_to_one")
    if planes:
        df = df.merge(tables["planes"], on=["tailnum"], how="left", suffixes=("", "_plane"),
                      validate="many_to_one")
    df = df.drop(columns=EXCLUDE)
    df = df[df["arr_delay"].notna()]
    if missing == "drop":
        df = df.dropna()
    df = df.sort_values("time_hour", kind="stable")
    y = (df["arr_delay"] > 15).to_numpy(np.float32)
    x = df.drop(columns=["arr_delay"])
    numeric = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c])]
    n = len(x)
    n_test, n_val = round(0.2 * n), round(0.1 * n)
    n_train = n - n_test - n_val
    parts = [slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)]
    strategy = "median" if missing == "drop" else missing
    ct = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy=strategy, add_indicator=indicators),
                                  StandardScaler()), numeric),
            ("cat", OneHotEncoder(max_categories=21, handle_unknown="infrequent_if_exist",
                                  sparse_output=False), ONE_HOT),
        ],
        remainder="drop",
    )
    ct.fit(x.iloc[parts[0]])
    out = []
    for s in parts:
        out += [ct.transform(x.iloc[s]).astype(np.float32), y[s]]
    return out


def one_run(data, seed, epochs):
    import torch
    from sklearn.metrics import roc_auc_score
    from torch import nn

    xtr, ytr, _xv, _yv, xte, yte = data
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(xtr.shape[1], 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                          nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(xtr), torch.from_numpy(ytr))
    loader = torch.utils.data.DataLoader(ds, batch_size=256, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb).squeeze(1), yb).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        scores = model(torch.from_numpy(xte)).squeeze(1).numpy()
    return {"roc_auc": float(roc_auc_score(yte, scores))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with the nycflights13 .csv.gz files")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()

    import pandas as pd
    import torch

    start = time.perf_counter()
    tables = {t: pd.read_csv(os.path.join(args.data, f"{t}.csv.gz"))
              for t in ["flights", "weather", "planes"]}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    runs, prepare_s = [], 0.0
    for name, weather, planes, missing, indicators in variants():
        t0 = time.perf_counter()
        data = prepare(tables, weather, planes, missing, indicators)
        prepare_s += time.perf_counter() - t0
        for seed in seeds:
            t1 = time.perf_counter()
            r = one_run(data, seed, args.epochs)
            r.update({"variant": name, "seed": seed, "seconds": time.perf_counter() - t1,
                      "features": int(data[0].shape[1]), "train_rows": int(data[0].shape[0])})
            runs.append(r)
            common.log(f"e2e-peer flights: {name} seed {seed}: ROC AUC {r['roc_auc']:.4f} "
                       f"({r['seconds']:.1f} s)")
    summaries = summarise(runs, [v[0] for v in variants()], seeds, "roc_auc")
    common.emit({
        "bench": "e2e-peer",
        "metric": "roc_auc",
        "job": "flights",
        "engine": "pandas+scikit-learn+pytorch",
        "torch_threads": torch.get_num_threads(),
        "seeds": seeds,
        "wall_s": time.perf_counter() - start,
        "prepare_s": prepare_s,
        "variants": summaries,
        "runs": runs,
        "peak_rss_bytes": common.peak_rss_bytes(),
    })


if __name__ == "__main__":
    main()
