"""Folder-loading throughput of the Python peers, images per second, one JSON line per run.

    bench/.venv/bin/python bench/py/load.py --engine pil --folder DIR [--threads 1]

Reads every file of DIR's class sub-folders (from make_images.py) in folder then file-name order
into one uint8 array `[n, height, width, 3]`, as whet's folder loader does:
  pil     `Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)` (PIL's bilinear
          widens its support when shrinking, as whet's triangle filter does), `np.asarray`
  opencv  `cv2.imread(path, IMREAD_COLOR)`, `cv2.resize(..., INTER_AREA)` (OpenCV's advice for
          shrinking; INTER_LINEAR would alias), `cvtColor(BGR2RGB)`

`--threads 2` runs two persistent worker processes (spawned once, as a PyTorch DataLoader with
`persistent_workers`), each loading every other file into its own array and sending it back; the
parent assembles the full array. The timed pass covers the whole round trip.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def list_files(folder):
    files = []
    for label, d in enumerate(sorted(e.path for e in os.scandir(folder) if e.is_dir())):
        files += [(label, p) for p in sorted(e.path for e in os.scandir(d) if e.is_file())]
    return files


def loader(engine, w, h):
    import numpy as np

    if engine == "pil":
        from PIL import Image

        def load(path):
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR))

        return load
    import cv2

    cv2.setNumThreads(1)

    def load(path):
        im = cv2.imread(path, cv2.IMREAD_COLOR)
        return cv2.cvtColor(cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2RGB)

    return load


def load_all(engine, paths, w, h):
    import numpy as np

    fn = loader(engine, w, h)
    out = np.empty((len(paths), h, w, 3), np.uint8)
    for i, p in enumerate(paths):
        out[i] = fn(p)
    return out


def worker_main(engine, paths, w, h, conn):
    common.set_thread_env(1)
    fn = loader(engine, w, h)  # imports done before the first timed pass
    conn.send("ready")
    import numpy as np

    while conn.recv() == "run":
        c0 = time.process_time()
        out = np.empty((len(paths), h, w, 3), np.uint8)
        for i, p in enumerate(paths):
            out[i] = fn(p)
        conn.send((out, time.process_time() - c0))


class Pool:
    def __init__(self, engine, paths, w, h, n):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.n, self.conns, self.procs = n, [], []
        for rank in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(engine, paths[rank::n], w, h, b))
            p.start()
            self.conns.append(a)
            self.procs.append(p)
        for c in self.conns:
            c.recv()
        self.total, self.shape = len(paths), (h, w, 3)

    def run(self):
        """The assembled array, and the workers' CPU seconds (their load is not "other")."""
        import numpy as np

        for c in self.conns:
            c.send("run")
        out = np.empty((self.total, *self.shape), np.uint8)
        cpu = 0.0
        for rank, c in enumerate(self.conns):
            part, secs = c.recv()
            out[rank::self.n] = part
            cpu += secs
        return out, cpu

    def close(self):
        for c in self.conns:
            c.send("stop")
        for p in self.procs:
            p.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--engine", choices=["pil", "opencv"], required=True)
    ap.add_argument("--folder", required=True)
    ap.add_argument("--format", default="", help="a label for the record (png, jpeg)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-other", type=float, default=0.1)
    ap.add_argument("--retries", type=int, default=2)
    args = ap.parse_args()
    env = common.set_thread_env(1)
    files = list_files(args.folder)
    paths = [p for _, p in files]
    if args.threads == 1:
        pool = None

        def run():
            return load_all(args.engine, paths, args.width, args.height), 0.0
    else:
        pool = Pool(args.engine, paths, args.width, args.height, args.threads)
        run = pool.run
    try:
        t0 = time.perf_counter()
        first, _ = run()
        first_s = time.perf_counter() - t0
        ips, others, retried = [], [], 0
        while len(ips) < args.repeats:
            with common.Window() as win:
                t0 = time.perf_counter()
                _, workers_cpu = run()
                wall = time.perf_counter() - t0
                win.add_own(workers_cpu)
            if win.other_cores > args.max_other and retried < args.retries:
                retried += 1
                time.sleep(1.0)
                continue
            ips.append(len(paths) / wall)
            others.append(round(win.other_cores, 3))
    finally:
        if pool is not None:
            pool.close()
    versions = {}
    if args.engine == "pil":
        import PIL

        versions["pillow"] = PIL.__version__
    else:
        import cv2

        versions["opencv"] = cv2.__version__
    common.emit({
        "bench": "load",
        "engine": args.engine,
        "threads": args.threads,
        "parallelism": f"{args.threads} process(es) x 1 library thread",
        "env": env,
        "versions": versions,
        "format": args.format,
        "folder": args.folder,
        "images": len(paths),
        "output": [args.height, args.width, 3],
        "pixel_sum": int(first.sum(dtype="uint64")),
        "unit": "images/s",
        "first_ips": len(paths) / first_s,
        "median_ips": common.median(ips),
        "ips": ips,
        "other_cores": others,
        "retried": retried,
        "peak_rss_bytes": common.peak_rss_bytes(),
    })


if __name__ == "__main__":
    main()
