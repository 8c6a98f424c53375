"""Runs every side-by-side comparison, one process per configuration, and collects the JSON lines.

    bench/.venv/bin/python bench/py/harness.py --whet-bench PATH [--whet PATH] --out bench/out/RUN

Called by bench/run.sh (which builds the binaries first); see bench/README.md. Writes
`OUT/raw.jsonl` (every record of every process, plus `machine`, `config` and `error` records) and
leaves the report to report.py.

Before each configuration it waits (up to --idle-wait seconds) for the machine to be idle, and
records the load it found; inside each process every timed repeat records the CPU other processes
used during it, and a repeat during which they used more than --max-other cores is retried (up to
--retries times), as BENCH-NOTES advises. Nothing runs two configurations at once.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

BENCH = os.path.dirname(HERE)

# Runs argv[2:] with its stdout sent to the file argv[1], then prints its exit code, CPU time and
# peak RSS (of the largest descendant).
CHILD_RUSAGE = """
import json, resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    p = subprocess.run(sys.argv[2:], stdout=out)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": p.returncode, "cpu_s": r.ru_utime + r.ru_stime,
                  "maxrss_kib": r.ru_maxrss}))
"""
REPO = os.path.dirname(BENCH)


class Raw:
    def __init__(self, path):
        self.f = open(path, "a")

    def write(self, rec):
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()


def thread_env(threads):
    env = dict(os.environ)
    for name in [
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "POLARS_MAX_THREADS",
        "RAYON_NUM_THREADS",
    ]:
        env[name] = str(threads)
    # Set on some machines to work around old OpenBLAS bugs; they slow a current numpy down
    # (env README). Unset for the measurement only; threadpoolctl output shows the kernel used.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def placement(args):
    """`whet-bench placement`: how far apart the host put two of this machine's virtual CPUs
    (a cache line's round trip between two threads, ns), or None without whet-bench."""
    if not args.whet_bench:
        return None
    try:
        p = subprocess.run([args.whet_bench, "placement"], capture_output=True, text=True,
                           timeout=30, cwd=REPO)
        return json.loads(p.stdout.strip().splitlines()[-1]).get("core_round_trip_ns")
    except (subprocess.SubprocessError, json.JSONDecodeError, IndexError, OSError):
        return None


def read_through(*paths):
    """Reads the files once, so that the next process finds them in the page cache. Needed
    before each run that reads a large input: this host pages out file pages left untouched for
    about a minute (DAMON's `pageout` scheme on unmapped pages), so an engine run after a long
    idle wait or a slow peer would otherwise read part of its input from disk."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def run_config(raw, args, label, cmd, threads, timeout, tag):
    """Runs one configuration in its own process; records its JSON lines tagged with `tag`.
    With 2 threads or more, `placement` before and after (`placement_ns`: [before, after]):
    where the host put the virtual CPUs decides how fast threads that share data can be."""
    idle = common.wait_idle(args.idle_wait, args.max_other)
    common.log(f"[{time.strftime('%H:%M:%S')}] {label} (machine busy before: {idle:.2f} cores)")
    before = placement(args) if threads >= 2 else None
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd,
            env=thread_env(threads),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        raw.write({"bench": "error", **tag, "label": label, "error": f"timed out after {timeout} s"})
        common.log(f"  timed out after {timeout} s")
        return []
    wall = time.perf_counter() - t0
    after = placement(args) if threads >= 2 else None
    recs = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        rec.update(tag)
        rec["idle_before_cores"] = round(idle, 3)
        rec["process_wall_s"] = round(wall, 3)
        if threads >= 2:
            rec["placement_ns"] = [before, after]
        raw.write(rec)
        recs.append(rec)
    if p.returncode != 0 or not recs:
        err = p.stderr.strip().splitlines()[-15:]
        raw.write(
            {"bench": "error", **tag, "label": label, "returncode": p.returncode, "stderr": err}
        )
        common.log(f"  failed (exit {p.returncode}): " + " | ".join(err[-3:]))
    return recs


def machine_record():
    info = {"bench": "machine", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    model, flags = "", []
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    info["cpu_model"] = model
    interesting = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                   "avx512_vnni", "avx512_bf16", "amx_tile"]
    info["cpu_flags"] = [f for f in interesting if f in flags]
    info["cpus"] = os.cpu_count()
    with open("/proc/meminfo") as f:
        info["mem_total_kib"] = int(f.readline().split()[1])
    info["kernel"] = platform.release()
    info["python"] = sys.version.split()[0]
    for tool, cmd in [("rustc", ["rustc", "--version"]), ("cargo", ["cargo", "--version"])]:
        try:
            info[tool] = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            info[tool] = None
    try:
        info["git_commit"] = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except OSError:
        pass
    info["openblas_env_was_set"] = {
        k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
    }
    return info


def timed(cmd, env, timeout, out_file):
    """Runs `cmd` from the repository root as one process tree, its stdout kept in `out_file`:
    (returncode, stdout, stderr tail, window, peak RSS of the largest process in KiB);
    returncode None on a timeout."""
    # A fresh wrapper process, so its children's peak RSS is the command's alone (this process
    # has already waited for the 6 GB pandas runs, which RUSAGE_CHILDREN would report). The
    # wrapper sends the command's stdout to a file so it can print its own usage line.
    wrapper = [sys.executable, "-c", CHILD_RUSAGE, out_file, *cmd]
    with common.Window() as w:
        try:
            p = subprocess.run(wrapper, env=env, capture_output=True, text=True, timeout=timeout,
                               cwd=REPO)
            err = p.stderr.strip().splitlines()[-10:]
            try:
                usage = json.loads(p.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                usage = {"returncode": p.returncode, "cpu_s": 0.0, "maxrss_kib": 0}
            rc = usage["returncode"]
        except subprocess.TimeoutExpired:
            usage = {"cpu_s": 0.0, "maxrss_kib": 0}
            rc, err = None, [f"timed out after {timeout} s"]
        w.add_own(usage["cpu_s"])
    try:
        with open(out_file) as f:
            stdout = f.read()
    except OSError:
        stdout = ""
    return rc, stdout, err, w, usage["maxrss_kib"]


def process_fields(rc, w, rss, idle, err):
    """The record fields of one timed process tree (see `timed`)."""
    return {
        "returncode": rc,
        "wall_s": round(w.wall, 2),
        "cpu_s": round(w.own, 2),
        "peak_rss_bytes": rss * 1024,
        "other_cores": round(w.other_cores, 3),
        "idle_before_cores": round(idle, 3),
        "stderr_tail": err if rc != 0 else [],
    }


def whet_table(out):
    """The primary metric's summary in whet's ablation report (`OUT/ablation.json`), per variant,
    in the peers' shape: {name, value: {n, mean, low, high}, delta: {..., p}, p_holm, verdict}."""
    try:
        with open(os.path.join(out, "ablation.json")) as f:
            report = json.load(f)
    except (OSError, json.JSONDecodeError):
        return "", []
    metric = report.get("primary_metric", "")
    table = []
    for s in report.get("summaries", []):
        m = s.get("metrics", {}).get(metric, {})
        value, delta = m.get("value") or {}, m.get("delta") or {}

        def ci(v):
            c = v.get("ci95") or {}
            return {"n": v.get("n"), "mean": v.get("mean"), "low": c.get("low"),
                    "high": c.get("high")}

        row = {"name": s.get("name"), "value": ci(value)}
        if delta:
            row["delta"] = {**ci(delta), "p": s.get("p_value")}
            row["p_holm"] = s.get("p_holm")
            row["verdict"] = s.get("verdict")
        table.append(row)
    return metric, table


# The end-to-end jobs: a shipped run file and the same study written with the Python stack.
E2E_JOBS = [
    ("mnist", "mnist-ablation.yaml", "e2e.py", ["--mnist", "datasets/mnist"]),
    ("flights", "flights-ablation.yaml", "e2e_flights.py", ["--data", "datasets/nycflights13"]),
]


def end_to_end(raw, args):
    """Each end-to-end job (E2E_JOBS) with whet's release build, then with its Python peer, one at a
    time, each timed as one process tree (wall time, CPU, peak RSS of the largest process)."""
    jobs = [j for j in E2E_JOBS if j[0] in args.e2e_jobs.split(",")]
    for job, file, peer_script, peer_args in jobs:
        yaml = os.path.join(REPO, "pipelines", file)
        if not args.whet or not os.path.exists(yaml):
            why = "no whet binary" if not args.whet else f"pipelines/{file} missing"
            raw.write({"bench": "e2e", "job": job, "skipped": why})
        else:
            out = os.path.join(args.out, f"e2e-{job}")
            shutil.rmtree(out, ignore_errors=True)
            cmd = [args.whet, "ablate", yaml, "--out", out, "--quiet"]
            idle = common.wait_idle(args.idle_wait, args.max_other)
            common.log(f"[{time.strftime('%H:%M:%S')}] e2e {job}: {' '.join(cmd)}")
            env = dict(os.environ)
            env["WHET_CACHE_DIR"] = os.path.join(out, "cache")
            rc, _, err, w, rss = timed(cmd, env, args.e2e_timeout,
                                       os.path.join(args.out, f"e2e-{job}-whet.stdout"))
            metric, table = whet_table(out) if rc == 0 else ("", [])
            raw.write(
                {
                    "bench": "e2e",
                    "job": job,
                    "command": f"whet ablate pipelines/{file}",
                    "binary": args.whet,
                    **process_fields(rc, w, rss, idle, err),
                    "metric": metric,
                    "variants": table,
                }
            )
        if not args.e2e_peers:
            continue
        cmd = [sys.executable, os.path.join(HERE, peer_script), *peer_args,
               *args.e2e_peer_args.split()]
        idle = common.wait_idle(args.idle_wait, args.max_other)
        common.log(f"[{time.strftime('%H:%M:%S')}] e2e {job} peer: {' '.join(cmd)}")
        rc, stdout, err, w, rss = timed(cmd, dict(os.environ), args.e2e_timeout,
                                        os.path.join(args.out, f"e2e-{job}-peer.stdout"))
        rec = {}
        for line in stdout.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
        raw.write(
            {
                **rec,
                "bench": "e2e-peer",
                "job": job,
                "command": f"python bench/py/{peer_script}",
                "script_wall_s": rec.get("wall_s"),
                **process_fields(rc, w, rss, idle, err),
            }
        )


def mlp_flops(width):
    """FLOPs of one training step per sample of 784-W-W-10 (as train.py and whet-bench count)."""
    pairs = [(784, width), (width, width), (width, 10)]
    fwd = sum(2 * a * b for a, b in pairs)
    return 2 * fwd + sum(2 * a * b for a, b in pairs[1:])


def scaling_samples(width):
    """Samples per epoch for the width curve: about 2e11 FLOP (2-3 s at one thread), whole
    batches, 1,024 to 60,000."""
    n = int(2e11 / mlp_flops(width)) // 128 * 128
    return min(max(n, 1024), 60_000)


def ints(text):
    return [int(float(v)) for v in text.split(",") if v]


def scaling(raw, args, threads, py, wb):
    """The scaling curves (--curves): records tagged `curve` (width, side, rows, cells)."""
    curves = set(args.curves.split(","))
    loop = ["--max-other", str(args.max_other), "--retries", str(args.retries)]
    if "width" in curves:
        # The matmul peak of this run (tagged, so it does not replace the matmul section of an
        # earlier run that the training section is compared with), then training samples/s of
        # 784-W-W-10 against W, whet and PyTorch.
        for t in threads:
            mm = ["--threads", str(t), "--repeats", str(args.repeats)] + loop
            run_config(raw, args, f"scaling peak numpy t={t}",
                       [py, f"{HERE}/train.py", "--engine", "matmul-numpy"] + mm, t, 600,
                       {"curve": "peak"})
            if wb:
                run_config(raw, args, f"scaling peak whet t={t}", [wb, "matmul"] + mm, t, 600,
                           {"curve": "peak"})
        for t in threads:
            for w in ints(args.widths):
                n = scaling_samples(w)
                tr = ["--threads", str(t), "--width", str(w), "--samples", str(n), "--epochs",
                      "2", "--seed", str(args.seed)] + loop
                for eng in ["torch"] + (["whet"] if wb else []):
                    cmd = ([wb, "train"] if eng == "whet"
                           else [py, f"{HERE}/train.py", "--engine", eng]) + tr
                    run_config(raw, args, f"scaling width={w} {eng} t={t}", cmd, t, 1800,
                               {"curve": "width", "width": w})
    if "side" in curves:
        # The augmentation chain's images/s against the image side (RGB), whet and the peers.
        sizes = ",".join(f"{s}x{s}x3" for s in ints(args.sides))
        aug = ["--ops", "chain", "--sizes", sizes, "--min-time", str(args.min_time), "--seed",
               str(args.seed), "--repeats", str(args.repeats)] + loop
        for t in threads:
            for eng in ["opencv", "albumentations"] + (["whet"] if wb else []):
                cmd = ([wb, "augment", "--threads", str(t)] if eng == "whet"
                       else [py, f"{HERE}/augment.py", "--engine", eng, "--threads", str(t)]) + aug
                run_config(raw, args, f"scaling side {eng} t={t}", cmd, t, 1800,
                           {"curve": "side"})
    if "rows" in curves:
        # Read + impute + z-score + join seconds against rows, whet, polars, pandas.
        data = os.path.join(BENCH, "data")
        for rows in ints(args.scaling_rows):
            mk = [py, f"{HERE}/make_table.py", "--out", data, "--rows", str(rows), "--keys",
                  str(args.keys), "--seed", str(args.seed)]
            made = subprocess.run(mk, capture_output=True, text=True, check=True, cwd=REPO)
            table = json.loads(made.stdout.strip().splitlines()[-1])
            files = ["--left", table["left"], "--right", table["right"]]
            configs = [("polars", t) for t in threads] + [("pandas-sklearn", 1)]
            configs += [("whet", t) for t in threads] if wb else []
            for eng, t in configs:
                cmd = ([wb, "tabular", "--threads", str(t)] if eng == "whet"
                       else [py, f"{HERE}/tabular.py", "--engine", eng, "--threads", str(t)])
                run_config(raw, args, f"scaling rows={rows} {eng} t={t}", cmd + files, t, 1800,
                           {"curve": "rows", "rows": rows})
    if "cells" in curves and args.whet:
        # Wall time of the README's main job against its number of cells (--seeds), for one
        # process with 1 and 2 threads and for --jobs 2 (two worker processes).
        yaml = os.path.join(REPO, "pipelines", "mnist-ablation.yaml")
        for jobs, t in [(1, 1), (1, 2), (2, 2)]:
            for seeds in ints(args.scaling_seeds):
                out = os.path.join(args.out, f"cells-j{jobs}-t{t}-s{seeds}")
                shutil.rmtree(out, ignore_errors=True)
                plan = subprocess.run([args.whet, "ablate", yaml, "--seeds", str(seeds),
                                       "--dry-run", "--json", "--out", out],
                                      capture_output=True, text=True, cwd=REPO)
                try:
                    cells = json.loads(plan.stdout)["runs"]
                except (json.JSONDecodeError, KeyError):
                    cells = None
                cmd = [args.whet, "ablate", yaml, "--seeds", str(seeds), "--jobs", str(jobs),
                       "--threads", str(t), "--out", out, "--quiet"]
                env = dict(os.environ)
                env["WHET_CACHE_DIR"] = os.path.join(out, "cache")
                idle = common.wait_idle(args.idle_wait, args.max_other)
                common.log(f"[{time.strftime('%H:%M:%S')}] scaling cells: {' '.join(cmd)}")
                rc, _, err, w, rss = timed(cmd, env, args.e2e_timeout,
                                           os.path.join(args.out, f"cells-j{jobs}-t{t}-s{seeds}.out"))
                raw.write({"bench": "ablate", "curve": "cells", "jobs": jobs, "threads": t,
                           "seeds": seeds, "cells": cells,
                           "command": f"whet ablate pipelines/mnist-ablation.yaml --seeds {seeds} "
                                      f"--jobs {jobs} --threads {t}",
                           **process_fields(rc, w, rss, idle, err)})


def folder_loading(raw, args, threads, py, wb):
    """The folder loader against PIL and OpenCV loops on the same PNG and JPEG files."""
    mk = [py, f"{HERE}/make_images.py", "--out", os.path.join(BENCH, "data"), "--n",
          str(args.images), "--seed", str(args.seed)]
    common.log(f"[{time.strftime('%H:%M:%S')}] make_images ({args.images} images)")
    made = subprocess.run(mk, capture_output=True, text=True, check=True, cwd=REPO)
    info = json.loads(made.stdout.strip().splitlines()[-1])
    raw.write(info)
    opts = ["--repeats", str(args.repeats), "--max-other", str(args.max_other), "--retries",
            str(args.retries), "--width", "64", "--height", "64"]
    for fmt, f in info["formats"].items():
        for t in threads:
            for eng in ["pil", "opencv"] + (["whet"] if wb else []):
                cmd = ([wb, "load", "--threads", str(t)] if eng == "whet"
                       else [py, f"{HERE}/load.py", "--engine", eng, "--threads", str(t)])
                cmd += ["--folder", f["folder"], "--format", fmt] + opts
                run_config(raw, args, f"load {fmt} {eng} t={t}", cmd, t, 1800,
                           {"file_bytes": f["bytes"]})


STREAM_RUN = """name: stream-bench
seed: 1
data:
  images:
    train: {{ shards: {{ path: {train}, width: {side}, height: {side}, shuffle_buffer: {buffer} }}{limit} }}
    test: {{ shards: {{ path: {test}, width: {side}, height: {side} }} }}
    validation: 0
model:
  task: classification
  hidden:
    - {{ dense: 64, activation: relu }}
train:
  optimizer: {{ momentum: {{ lr: 0.05, momentum: 0.9 }} }}
  batch_size: 256
  epochs: 1
"""


def streaming(raw, args):
    """One epoch on a generated set of `--stream-images` 64x64 grey images in WebDataset shards
    (whet-bench make-shards, kept under bench/data), streamed under `--stream-budget`, and the
    first `--stream-memory-images` of the same shards trained in memory: images/s of each and
    the streamed run's peak RSS (issue 17's goal: <= 1 GB)."""
    if not (args.whet_bench and args.whet):
        raw.write({"bench": "stream", "skipped": "needs the whet and whet-bench binaries"})
        return
    n, side = args.stream_images, 64
    data = os.path.join(BENCH, "data", f"shards-{n}-{side}")
    info_file = os.path.join(data, "info.json")
    if not os.path.exists(info_file):
        shutil.rmtree(data, ignore_errors=True)
        common.log(f"[{time.strftime('%H:%M:%S')}] make-shards ({n} images)")
        made = subprocess.run(
            [args.whet_bench, "make-shards", "--out", data, "--images", str(n), "--side",
             str(side), "--threads", str(os.cpu_count() or 1)],
            capture_output=True, text=True, check=True, cwd=REPO)
        with open(info_file, "w") as f:
            f.write(made.stdout.strip().splitlines()[-1])
    with open(info_file) as f:
        raw.write(json.load(f))
    threads = os.cpu_count() or 1
    for mode, limit, extra in [
        ("streamed", None, ["--max-memory", args.stream_budget]),
        ("in-memory", args.stream_memory_images, []),
    ]:
        yaml = os.path.join(args.out, f"stream-{mode}.yaml")
        with open(yaml, "w") as f:
            f.write(STREAM_RUN.format(
                train=os.path.join(data, "train"), test=os.path.join(data, "test"), side=side,
                buffer=args.stream_buffer, limit=f", limit: {limit}" if limit else ""))
        out = os.path.join(args.out, f"stream-{mode}")
        shutil.rmtree(out, ignore_errors=True)
        cmd = [args.whet, *extra, "run", yaml, "--out", out, "--quiet"]
        idle = common.wait_idle(args.idle_wait, args.max_other)
        common.log(f"[{time.strftime('%H:%M:%S')}] stream {mode}: {' '.join(cmd)}")
        env = thread_env(threads)
        env["WHET_CACHE_DIR"] = os.path.join(out + "-cache")
        rc, _, err, w, rss = timed(cmd, env, args.e2e_timeout,
                                   os.path.join(args.out, f"stream-{mode}.stdout"))
        rec = {"bench": "stream", "mode": mode, "threads": threads,
               "budget": extra[1] if extra else None,
               **process_fields(rc, w, rss, idle, err)}
        if rc == 0:
            with open(os.path.join(out, "metrics.json")) as f:
                m = json.load(f)
            with open(os.path.join(out, "manifest.json")) as f:
                images = json.load(f)["data"]["images"]
            rec.update({
                "images": images["rows"]["train"],
                "train_images_per_s": m["samples_per_second"],
                "train_seconds": m["train_seconds"],
                "total_seconds": m["total_seconds"],
                "test_accuracy": m["test"].get("accuracy"),
                "streamed": images.get("streamed"),
            })
        raw.write(rec)


STREAM_TABLE_RUN = """name: stream-table-bench
seed: 7
data:
  tables:
    events: {left}
    right: {right}
  main: events
  target: {{ column: y, threshold: 0.5 }}
steps:
  - join: {{ with: right, on: [key], how: left, cardinality: many_to_one }}
  - exclude: [key]
  - impute: {{ numeric: mean }}
  - normalize: {{ method: zscore }}
split: {{ method: hash, test: 0.1, validation: 0.1 }}
model:
  task: binary
  hidden: [{{ dense: 16, activation: relu }}]
train:
  optimizer: {{ adam: {{ lr: 0.002 }} }}
  batch_size: 512
  epochs: 1
"""


def stream_table(raw, args, py):
    """`whet export` of a generated `--stream-rows`-row events table (make_table.py --events:
    20 columns, 10 % missing) left-joined with a `--stream-keys`-row table, mean-imputed and
    z-scored on the training rows, written as Parquet, under `--max-memory
    --stream-table-budget` (the table does not fit, so it streams); then the same plan in
    polars' streaming engine (stream_table.py), both after the inputs were read once (the same
    page cache for both). Wall time, rows/s and peak RSS of each process (issue 17's goals:
    whet's peak RSS <= 2 GB, no slower than polars). Each output is removed
    after its run (they are as large as the input)."""
    if not args.whet:
        raw.write({"bench": "stream-table", "skipped": "needs the whet binary"})
        return
    data = os.path.join(BENCH, "data")
    mk = [py, f"{HERE}/make_table.py", "--out", data, "--events", "--rows", str(args.stream_rows),
          "--keys", str(args.stream_keys), "--seed", str(args.seed)]
    common.log(f"[{time.strftime('%H:%M:%S')}] make_table --events ({args.stream_rows} rows)")
    made = subprocess.run(mk, capture_output=True, text=True, check=True, cwd=REPO)
    table = json.loads(made.stdout.strip().splitlines()[-1])
    raw.write({**table, "bench": "make-events"})
    yaml = os.path.join(args.out, "stream-table.yaml")
    with open(yaml, "w") as f:
        f.write(STREAM_TABLE_RUN.format(left=table["left"], right=table["right"]))
    # Both engines start from the same page cache: the inputs read once beforehand (otherwise
    # the first engine reads a freshly generated table from disk and the second from memory).
    common.log(f"[{time.strftime('%H:%M:%S')}] stream-table: reading the inputs once")
    read_through(table["left"], table["right"])
    threads = os.cpu_count() or 1
    # cargo's `dev` profile builds into target/debug.
    profile = {"debug": "dev"}.get(os.path.basename(os.path.dirname(os.path.abspath(args.whet))),
                                   os.path.basename(os.path.dirname(os.path.abspath(args.whet))))
    for engine in ("whet", "polars"):
        out = os.path.join(args.out, f"stream-table-{engine}")
        shutil.rmtree(out, ignore_errors=True)
        if engine == "whet":
            cmd = [args.whet, "--max-memory", args.stream_table_budget, "export", yaml,
                   "--out", out, "--format", "parquet", "--quiet"]
        else:
            cmd = [py, f"{HERE}/stream_table.py", "--left", table["left"], "--right",
                   table["right"], "--out", out, "--seed", str(args.seed)]
        idle = common.wait_idle(args.idle_wait, args.max_other)
        common.log(f"[{time.strftime('%H:%M:%S')}] stream-table {engine}: {' '.join(cmd)}")
        env = thread_env(threads)
        env["WHET_CACHE_DIR"] = out + "-cache"
        rc, stdout, err, w, rss = timed(cmd, env, args.e2e_timeout,
                                        os.path.join(args.out, f"stream-table-{engine}.stdout"))
        rec = {"bench": "stream-table", "engine": engine, "threads": threads,
               "rows": args.stream_rows, **process_fields(rc, w, rss, idle, err)}
        if rc == 0 and engine == "whet":
            with open(os.path.join(out, "manifest.json")) as f:
                m = json.load(f)
            tables = m["data"]["tables"]
            rec.update({"budget": args.stream_table_budget, "profile": profile,
                        "split_rows": tables["rows"], "streamed": tables["report"].get("streamed"),
                        "out_bytes": sum(e["bytes"] for e in m["files"])})
        elif rc == 0:
            rec.update(json.loads(stdout.strip().splitlines()[-1]))
            rec["bench"] = "stream-table"
        raw.write(rec)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out + "-cache", ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, help="run folder (raw.jsonl goes there)")
    ap.add_argument("--whet-bench", default="", help="whet-bench binary ('' = peers only)")
    ap.add_argument("--whet", default="", help="whet CLI binary for the end-to-end job")
    ap.add_argument("--only",
                    default="augment,train,cnn,matmul,tabular,load,e2e,scaling,stream,stream-table",
                    help="comma-separated sections: augment, train (the MLP), cnn (the "
                         "LeNet-5-like CNN), matmul, tabular, load (folder loading), e2e, "
                         "scaling (the curves), stream (training from shards), stream-table "
                         "(exporting a table larger than the budget)")
    ap.add_argument("--stream-rows", type=int, default=100_000_000,
                    help="rows of the generated events table of stream-table")
    ap.add_argument("--stream-keys", type=int, default=1_000_000,
                    help="rows of the table it is joined with")
    ap.add_argument("--stream-table-budget", default="2GB",
                    help="--max-memory of whet's streamed export")
    ap.add_argument("--stream-images", type=int, default=1_000_000,
                    help="training images of the generated shard set")
    ap.add_argument("--stream-memory-images", type=int, default=100_000,
                    help="images of the same shards trained in memory, for the in-memory rate")
    ap.add_argument("--stream-budget", default="900MB", help="--max-memory of the streamed run")
    ap.add_argument("--stream-buffer", type=int, default=20_000, help="shuffle_buffer")
    ap.add_argument("--curves", default="width,side,rows,cells",
                    help="scaling curves: width (training vs hidden width), side (augmentation "
                         "vs image side), rows (tables vs rows), cells (ablation vs cells)")
    ap.add_argument("--widths", default="64,128,256,512,1024,2048")
    ap.add_argument("--sides", default="28,64,128,256,512,1024")
    ap.add_argument("--scaling-rows", default="1e5,1e6,1e7")
    ap.add_argument("--scaling-seeds", default="1,2,3,4",
                    help="seeds of the main job for the cells curve (cells = variants x seeds)")
    ap.add_argument("--images", type=int, default=2000, help="files per format for load")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per figure")
    ap.add_argument("--tabular-repeats", type=int, default=3, help="processes per tabular engine")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-other", type=float, default=0.1)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--idle-wait", type=float, default=30.0)
    ap.add_argument("--e2e-timeout", type=float, default=3600.0)
    ap.add_argument("--e2e-jobs", default="mnist,flights",
                    help="comma-separated end-to-end jobs: mnist (the README's main job), flights")
    ap.add_argument("--e2e-peers", type=int, default=1,
                    help="1: run each end-to-end job's Python peer too; 0: whet only")
    ap.add_argument("--e2e-peer-args", default="",
                    help="extra arguments for the peers, e.g. '--seeds 1 --epochs 2' for a quick "
                         "check of the harness (the comparison is then not like for like)")
    ap.add_argument("--pass", dest="pass_no", type=int, default=1,
                    help="tag records with this pass number (a second pass over the same "
                         "configurations, e.g. in reverse order, is reported separately)")
    ap.add_argument("--reverse", action="store_true",
                    help="run whet first and the peers after it (balances drifting load)")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    raw = Raw(os.path.join(args.out, "raw.jsonl"))
    py = sys.executable
    only = set(args.only.split(","))
    threads = [int(t) for t in args.threads.split(",")]
    wb = args.whet_bench
    if args.pass_no == 1:
        raw.write(machine_record())
        raw.write({"bench": "config", **vars(args)})
    common_args = ["--repeats", str(args.repeats), "--max-other", str(args.max_other),
                   "--retries", str(args.retries)]

    if "matmul" in only:
        for t in threads:
            for eng in ["numpy", "torch"]:
                cmd = [py, f"{HERE}/train.py", "--engine", f"matmul-{eng}", "--threads", str(t)]
                run_config(raw, args, f"matmul {eng} t={t}", cmd + common_args, t, 600, {})
            if wb:
                cmd = [wb, "matmul", "--threads", str(t)] + common_args
                run_config(raw, args, f"matmul whet t={t}", cmd, t, 600, {})

    if "augment" in only:
        aug = ["--min-time", str(args.min_time), "--seed", str(args.seed)] + common_args
        engines = ["opencv", "albumentations", "torchvision"] + (["whet"] if wb else [])
        if args.reverse:
            engines.reverse()
        tag = {"pass": args.pass_no}
        for t in threads:
            for eng in engines:
                if eng == "whet":
                    cmd = [wb, "augment", "--threads", str(t)] + aug
                else:
                    cmd = [py, f"{HERE}/augment.py", "--engine", eng, "--threads", str(t)] + aug
                run_config(raw, args, f"augment {eng} t={t} (pass {args.pass_no})", cmd, t, 1800,
                           tag)

    if "train" in only:
        tr = ["--epochs", str(args.epochs), "--seed", str(args.seed), "--max-other",
              str(args.max_other), "--retries", str(args.retries)]
        for t in threads:
            for eng in ["numpy", "torch"]:
                cmd = [py, f"{HERE}/train.py", "--engine", eng, "--threads", str(t)] + tr
                run_config(raw, args, f"train {eng} t={t}", cmd, t, 1800, {})
            if wb:
                # --paired-peak: whet's matmul timed after each epoch, for the paired % of peak.
                cmd = [wb, "train", "--threads", str(t), "--paired-peak"] + tr
                run_config(raw, args, f"train whet t={t}", cmd, t, 1800, {})

    if "cnn" in only:
        # The LeNet-5-like CNN (train.py / whet-bench train --model lenet): PyTorch is its peer.
        tr = ["--model", "lenet", "--epochs", str(args.epochs), "--seed", str(args.seed),
              "--max-other", str(args.max_other), "--retries", str(args.retries)]
        engines = ["torch"] + (["whet"] if wb else [])
        if args.reverse:
            engines.reverse()
        for t in threads:
            for eng in engines:
                if eng == "whet":
                    cmd = [wb, "train", "--threads", str(t)] + tr
                else:
                    cmd = [py, f"{HERE}/train.py", "--engine", eng, "--threads", str(t)] + tr
                run_config(raw, args, f"cnn {eng} t={t}", cmd, t, 1800, {})

    if "tabular" in only:
        data = os.path.join(BENCH, "data")
        mk = [py, f"{HERE}/make_table.py", "--out", data, "--rows", str(args.rows),
              "--keys", str(args.keys), "--seed", str(args.seed)]
        common.log(f"[{time.strftime('%H:%M:%S')}] make_table ({args.rows} rows)")
        made = subprocess.run(mk, capture_output=True, text=True, check=True, cwd=REPO)
        table = json.loads(made.stdout.strip().splitlines()[-1])
        raw.write(table)
        files = ["--left", table["left"], "--right", table["right"]]
        configs = [("polars", t) for t in threads] + [("pandas-sklearn", 1)]
        if wb:
            configs += [("whet", t) for t in threads]
        # Round-robin over engines, so slow drifts in the machine's load hit all of them.
        for rep in range(args.tabular_repeats):
            for eng, t in configs:
                if eng == "whet":
                    cmd = [wb, "tabular", "--threads", str(t)] + files
                else:
                    cmd = [py, f"{HERE}/tabular.py", "--engine", eng, "--threads", str(t)] + files
                # Every engine starts with its inputs in the page cache.
                read_through(table["left"], table["right"])
                run_config(raw, args, f"tabular {eng} t={t} #{rep + 1}", cmd, t, 1800,
                           {"repeat": rep})

    if "stream" in only:
        streaming(raw, args)

    if "stream-table" in only:
        stream_table(raw, args, py)

    if "load" in only:
        folder_loading(raw, args, threads, py, wb)

    if "e2e" in only:
        end_to_end(raw, args)

    if "scaling" in only:
        scaling(raw, args, threads, py, wb)
    common.log("harness: done")


if __name__ == "__main__":
    main()
