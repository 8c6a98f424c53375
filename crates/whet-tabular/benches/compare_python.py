"""The same work as `examples/stages_timing.rs` in polars (Python) and pandas + scikit-learn:
mean imputation + z-score of 20 float columns (10 % missing) + a left join on an integer key
(100k keys). Each library runs in its own process (thread pools do not mix); peak RSS is
reported per process.

Run with: python benches/compare_python.py 10000000   (needs numpy, polars, pandas, scikit-learn)
"""

import resource
import subprocess
import sys
import time

import numpy as np


def data(n):
    rng = np.random.default_rng(42)
    key = rng.integers(0, 100_000, n)
    cols = {}
    for j in range(20):
        x = rng.random(n) * 10.0 + j
        x[rng.random(n) < 0.1] = np.nan
        cols[f"x{j}"] = x
    return key, cols


def run(lib, n):
    key, cols = data(n)
    if lib == "polars":
        import polars as pl

        df = pl.DataFrame({"key": key, **cols}).fill_nan(None)
        right = pl.DataFrame({"key": np.arange(100_000), "r0": np.arange(100_000, dtype=float)})
        t = time.perf_counter()
        xs = [f"x{j}" for j in range(20)]
        df = df.with_columns([pl.col(c).fill_null(pl.col(c).mean()) for c in xs])
        df = df.with_columns([(pl.col(c) - pl.col(c).mean()) / pl.col(c).std(ddof=0) for c in xs])
        out = df.join(right, on="key", how="left", maintain_order="left")
        total = time.perf_counter() - t
        threads = pl.thread_pool_size()
    else:
        import pandas as pd
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import StandardScaler

        df = pd.DataFrame({"key": key, **cols})
        right = pd.DataFrame({"key": np.arange(100_000), "r0": np.arange(100_000, dtype=float)})
        t = time.perf_counter()
        xs = [f"x{j}" for j in range(20)]
        x = SimpleImputer(strategy="mean").fit_transform(df[xs])
        x = StandardScaler().fit_transform(x)
        df = pd.concat([df[["key"]], pd.DataFrame(x, columns=xs)], axis=1)
        out = df.merge(right, on="key", how="left")
        total = time.perf_counter() - t
        threads = "n/a"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{lib}: rows {n}: total {total:.3} s; out {out.shape}; peak RSS {rss:.0f} MiB; threads {threads}")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    if len(sys.argv) > 2:
        run(sys.argv[2], n)
    else:
        for lib in ["polars", "pandas+sklearn"]:
            subprocess.run([sys.executable, __file__, str(n), lib], check=True)
