"""Tabular workload of the Python peers: read, mean imputation + z-score, left join. One JSON line.

    bench/.venv/bin/python bench/py/tabular.py --engine polars --threads 2 \
        --left bench/data/left-7-10000000.parquet --right bench/data/right-7-100000.parquet

Run each engine in its own process (peak memory is per process). Stages, each timed:
  read       both Parquet files into memory
  transform  every float column `x*`: fill nulls with the column mean, then z-score with the
             mean and the population standard deviation (ddof = 0, as scikit-learn's
             StandardScaler) of the filled column
  join       left join of the result with the right table on `key`
`total_s` is their sum; `peak_rss_bytes` is the process's high-water mark (VmHWM). A checksum of
the result (row count, sum of x0 after scaling, sum of r0 over matched rows) lets the harness check
that every engine did the same work.

Engines: `polars` (lazy transform, eager join; POLARS_MAX_THREADS = --threads) and
`pandas-sklearn` (pandas with pyarrow for I/O and the join, scikit-learn SimpleImputer +
StandardScaler for the transform; single-threaded by design).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def run_polars(left_path, right_path):
    import polars as pl

    stages = {}
    with common.Window() as w:
        left = pl.read_parquet(left_path)
        right = pl.read_parquet(right_path)
    stages["read"] = w
    cols = [c for c in left.columns if c.startswith("x")]
    with common.Window() as w:
        filled = [pl.col(c).fill_null(pl.col(c).mean()) for c in cols]
        scaled = [(pl.col(c) - pl.col(c).mean()) / pl.col(c).std(ddof=0) for c in cols]
        out = left.lazy().with_columns(filled).with_columns(scaled).collect()
    stages["transform"] = w
    del left
    with common.Window() as w:
        joined = out.join(right, on="key", how="left")
    stages["join"] = w
    check = {
        "rows": joined.height,
        "sum_x0": float(joined["x0"].sum()),
        "sum_r0": float(joined["r0"].sum()),
    }
    versions = {"polars": pl.__version__}
    threads = {"polars.thread_pool_size": pl.thread_pool_size()}
    return stages, check, versions, threads


def run_pandas_sklearn(left_path, right_path):
    import numpy as np
    import pandas as pd
    import pyarrow
    import sklearn
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_info

    stages = {}
    with common.Window() as w:
        left = pd.read_parquet(left_path, engine="pyarrow")
        right = pd.read_parquet(right_path, engine="pyarrow")
    stages["read"] = w
    cols = [c for c in left.columns if c.startswith("x")]
    with common.Window() as w:
        x = SimpleImputer(strategy="mean").fit_transform(left[cols])
        x = StandardScaler().fit_transform(x)
        out = pd.DataFrame(x, columns=cols, index=left.index)
        out.insert(0, "key", left["key"].to_numpy())
    stages["transform"] = w
    del left, x
    with common.Window() as w:
        joined = out.merge(right, on="key", how="left")
    stages["join"] = w
    check = {
        "rows": len(joined),
        "sum_x0": float(joined["x0"].sum()),
        "sum_r0": float(np.nansum(joined["r0"].to_numpy())),
    }
    versions = {
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
    }
    threads = {
        "blas": [
            {k: i.get(k) for k in ("internal_api", "num_threads", "architecture")}
            for i in threadpool_info()
        ]
    }
    return stages, check, versions, threads


ENGINES = {"polars": run_polars, "pandas-sklearn": run_pandas_sklearn}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--engine", choices=sorted(ENGINES), required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--left", required=True)
    ap.add_argument("--right", required=True)
    args = ap.parse_args()
    env = common.set_thread_env(args.threads)
    t0 = time.perf_counter()
    stages, check, versions, threads = ENGINES[args.engine](args.left, args.right)
    wall = time.perf_counter() - t0
    total = sum(w.wall for w in stages.values())
    other = sum(w.other_cores * w.wall for w in stages.values()) / max(total, 1e-9)
    common.emit(
        {
            "bench": "tabular",
            "engine": args.engine,
            "threads": args.threads,
            "env": env,
            "library_threads": threads,
            "versions": {"python": sys.version.split()[0], **versions},
            **{f"{k}_s": round(w.wall, 4) for k, w in stages.items()},
            "total_s": round(total, 4),
            "wall_s": round(wall, 4),
            "other_cores": round(other, 3),
            "stage_other_cores": {k: round(w.other_cores, 3) for k, w in stages.items()},
            "peak_rss_bytes": common.peak_rss_bytes(),
            "check": check,
            "left": args.left,
            "right": args.right,
        }
    )


if __name__ == "__main__":
    main()
