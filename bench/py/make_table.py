"""Writes the tabular benchmark's input tables as Parquet, deterministically from a seed.

    bench/.venv/bin/python bench/py/make_table.py --out bench/data [--rows 10000000] [--seed 7]

Left table `left-<seed>-<rows>.parquet`: `key` (int64) and `x0`..`x19` (float64), `rows` rows.
Right table `right-<seed>-<keys>.parquet`: `key` (each of 0..keys-1 once, in hashed order) and
`r0`..`r3` (float64). Every value comes from `common.h32` (a fixed integer hash, not an RNG
library), so the files are the same on any machine and with any numpy:

    key[i]    = h32(seed, 5, i, 0, 0) mod keys
    x_c[i]    = 10*c + (c + 1) * unit(h32(seed, 10 + c, i, 0, 0)), missing when
                h32(seed, 40 + c, i, 0, 0) mod 10 == 0 (10 % missing)
    right key order: argsort of h32(seed, 6, k, 0, 0); r_j[k] = unit(h32(seed, 70 + j, k, 0, 0))

Parquet: zstd level 1, row groups of 1M rows (so readers can parallelise). Existing files with
the same parameters are kept (idempotent); files are written to a temporary name, then renamed.

`--events` writes the streaming benchmark's table instead (issue 17), one row group at a time
so that its size is not bounded by memory: `events-<seed>-<rows>.parquet` with `key` (int64, as
above), `x0`..`x17` (float32, the formula above, 10 % missing) and `y` (int8, 0 or 1:
h32(seed, 90, i, 0, 0) mod 2), 20 columns; and `right-<seed>-<keys>-f32.parquet`, the right table
with float32 `r*`.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

COLS = 20
RIGHT_COLS = 4


def paths(out, seed, rows, keys):
    return (
        os.path.join(out, f"left-{seed}-{rows}.parquet"),
        os.path.join(out, f"right-{seed}-{keys}.parquet"),
    )


def write_atomic(table, path):
    import pyarrow.parquet as pq

    tmp = path + ".tmp"
    pq.write_table(
        table, tmp, compression="zstd", compression_level=1, row_group_size=1_000_000
    )
    os.replace(tmp, path)


def make_left(seed, rows, keys):
    import numpy as np
    import pyarrow as pa

    arrays, names = [], []
    step = 1_000_000
    key = np.empty(rows, dtype=np.int64)
    for s in range(0, rows, step):
        i = np.arange(s, min(rows, s + step), dtype=np.uint64)
        key[s : s + len(i)] = h(seed, 5, i) % np.uint32(keys)
    arrays.append(pa.array(key))
    names.append("key")
    for c in range(COLS):
        vals = np.empty(rows, dtype=np.float64)
        missing = np.empty(rows, dtype=bool)
        for s in range(0, rows, step):
            i = np.arange(s, min(rows, s + step), dtype=np.uint64)
            vals[s : s + len(i)] = 10.0 * c + (c + 1) * common.unit(h(seed, 10 + c, i))
            missing[s : s + len(i)] = h(seed, 40 + c, i) % np.uint32(10) == 0
        arrays.append(pa.array(vals, mask=missing))
        names.append(f"x{c}")
    return pa.table(arrays, names=names)


def make_right(seed, keys):
    import numpy as np
    import pyarrow as pa

    k = np.arange(keys, dtype=np.uint64)
    order = np.argsort(h(seed, 6, k), kind="stable")
    arrays = [pa.array(order.astype(np.int64))]
    names = ["key"]
    for j in range(RIGHT_COLS):
        arrays.append(pa.array(common.unit(h(seed, 70 + j, order.astype(np.uint64)))))
        names.append(f"r{j}")
    return pa.table(arrays, names=names)


EVENT_COLS = 18


def events_paths(out, seed, rows, keys):
    return (
        os.path.join(out, f"events-{seed}-{rows}.parquet"),
        os.path.join(out, f"right-{seed}-{keys}-f32.parquet"),
    )


def write_events(seed, rows, keys, path):
    """The events table, written 1M rows (one row group) at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path + ".tmp"
    writer = None
    step = 1_000_000
    for s in range(0, rows, step):
        i = np.arange(s, min(rows, s + step), dtype=np.uint64)
        arrays = [pa.array((h(seed, 5, i) % np.uint32(keys)).astype(np.int64))]
        names = ["key"]
        for c in range(EVENT_COLS):
            vals = (10.0 * c + (c + 1) * common.unit(h(seed, 10 + c, i))).astype(np.float32)
            missing = h(seed, 40 + c, i) % np.uint32(10) == 0
            arrays.append(pa.array(vals, mask=missing))
            names.append(f"x{c}")
        arrays.append(pa.array((h(seed, 90, i) % np.uint32(2)).astype(np.int8)))
        names.append("y")
        table = pa.table(arrays, names=names)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression="zstd", compression_level=1)
        writer.write_table(table, row_group_size=step)
    writer.close()
    os.replace(tmp, path)


def h(seed, a, i):
    return common.h32(seed, a, i, 0, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--events", action="store_true",
                    help="the streaming benchmark's table (see above) instead")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.events:
        left, right = events_paths(args.out, args.seed, args.rows, args.keys)
        if not os.path.exists(right):
            import pyarrow as pa

            t = make_right(args.seed, args.keys)
            t = t.cast(pa.schema([pa.field("key", pa.int64())]
                                 + [pa.field(f"r{j}", pa.float32()) for j in range(RIGHT_COLS)]))
            write_atomic(t, right)
        if not os.path.exists(left):
            write_events(args.seed, args.rows, args.keys, left)
    else:
        left, right = paths(args.out, args.seed, args.rows, args.keys)
        if not os.path.exists(right):
            write_atomic(make_right(args.seed, args.keys), right)
        if not os.path.exists(left):
            write_atomic(make_left(args.seed, args.rows, args.keys), left)
    common.emit(
        {
            "bench": "make_table",
            "left": left,
            "right": right,
            "rows": args.rows,
            "keys": args.keys,
            "seed": args.seed,
            "left_bytes": os.path.getsize(left),
            "right_bytes": os.path.getsize(right),
        }
    )


if __name__ == "__main__":
    main()
