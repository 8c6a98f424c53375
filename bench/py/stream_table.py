"""The streaming table benchmark's peer (issue 17): whet's export plan in polars' streaming engine.

    bench/.venv/bin/python bench/py/stream_table.py --left bench/data/events-7-100000000.parquet \
        --right bench/data/right-7-1000000-f32.parquet --out /tmp/peer

The plan is the one `whet export` runs for the harness's run file (`stream_table.RUN`), each
pass a lazy query collected by the streaming engine, none holding the table:
  split   a hash of the row number: one row in ten is test, one validation, the rest training
          (whet's `split: { method: hash }` decides the same way, with its own hash)
  join    left join with the right table on `key` (many to one), row order kept; `key` dropped
  pass 1  the mean of every feature column (`x*`, `r*`) over the training rows (impute)
  pass 2  the population standard deviation (ddof = 0) of each column with its missing values
          filled by that mean, over the training rows (z-score)
  pass 3  every row filled and scaled, as float32, with `row` (its row number) first and
          `target` (`y` > 0.5 as 0/1) last, written as one zstd Parquet file per split
          (`PartitionBy` on the split)
Prints one JSON line: the seconds of each pass, the rows written per split and the versions.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--left", required=True)
    ap.add_argument("--right", required=True)
    ap.add_argument("--out", required=True, help="folder of the three split files")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    import polars as pl

    right = pl.scan_parquet(args.right)
    lf = (
        pl.scan_parquet(args.left)
        .with_row_index("row")
        .join(right, on="key", how="left", maintain_order="left", coalesce=True)
        .drop("key")
        .with_columns(
            split=(pl.col("row").hash(args.seed) % 10).cast(pl.UInt8),
            target=(pl.col("y") > 0.5).cast(pl.Float32),
        )
        .drop("y")
    )
    cols = [c for c in lf.collect_schema().names() if c[0] in "xr" and c != "row"]
    train = lf.filter(pl.col("split") >= 2)
    stages = {}

    t = time.perf_counter()
    means = train.select(pl.col(cols).mean()).collect(engine="streaming").row(0, named=True)
    stages["mean"] = time.perf_counter() - t

    filled = lf.with_columns(pl.col(c).fill_null(means[c]) for c in cols)
    t = time.perf_counter()
    stds = (
        filled.filter(pl.col("split") >= 2)
        .select(pl.col(cols).std(ddof=0))
        .collect(engine="streaming")
        .row(0, named=True)
    )
    stages["std"] = time.perf_counter() - t

    part = (
        pl.when(pl.col("split") == 0)
        .then(pl.lit("test"))
        .when(pl.col("split") == 1)
        .then(pl.lit("validation"))
        .otherwise(pl.lit("train"))
    )
    out = filled.with_columns(
        ((pl.col(c) - means[c]) / stds[c]).cast(pl.Float32) for c in cols
    ).select("row", *cols, "target", part=part)
    os.makedirs(args.out, exist_ok=True)
    t = time.perf_counter()
    out.sink_parquet(
        pl.PartitionBy(args.out, key="part", include_key=False),
        compression="zstd",
        engine="streaming",
    )
    stages["write"] = time.perf_counter() - t

    written = {}
    for root, _, files in os.walk(args.out):
        for f in files:
            if f.endswith(".parquet"):
                part = os.path.basename(root).split("=")[-1]
                n = pl.scan_parquet(os.path.join(root, f)).select(pl.len()).collect().item()
                written[part] = written.get(part, 0) + n
    common.emit(
        {
            "bench": "stream-table-peer",
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "split_rows": written,
            "features": len(cols),
            "versions": {"polars": pl.__version__},
        }
    )


if __name__ == "__main__":
    main()
