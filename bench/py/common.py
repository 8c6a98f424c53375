"""Shared helpers of the Python peers: deterministic inputs, thread settings, CPU accounting, output.

Everything here has a twin in `crates/whet-bench/src/` so both sides see the same bytes and measure
the same way. The input formula (documented in bench/README.md) is a plain 32-bit integer hash, not
an RNG library, so it is easy to reproduce exactly in any language:

    h32(seed, a, b, c, d):
        v = (seed*0x9E3779B1 + a*0x85EBCA77 + b*0xC2B2AE3D + c*0x27D4EB2F + d*0x165667B1
             + 0x632BE5AB) mod 2**32
        v ^= v >> 15; v = v*0x2C1B3C6D mod 2**32; v ^= v >> 12; v = v*0x297A2D39 mod 2**32
        v ^= v >> 15
    pixel(seed, index, y, x, c) = h32(seed, index, y, x, c) >> 24

Import this module only after the thread environment variables are set (see `set_thread_env`):
numpy reads them once, at import.
"""

import json
import os
import sys
import time

MASK = 0xFFFFFFFF


def set_thread_env(threads: int) -> dict:
    """Sets every thread-count variable the peers read, before numpy/torch/cv2/polars load.

    Returns the variables as set, for the output record.
    """
    names = [
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "POLARS_MAX_THREADS",
        "RAYON_NUM_THREADS",
    ]
    for name in names:
        os.environ[name] = str(threads)
    return {name: os.environ[name] for name in names}


def h32(seed, a, b, c, d):
    """The input hash, vectorised over numpy integer arrays (or plain ints); returns uint32 values."""
    import numpy as np

    def u(v):
        return np.asarray(v, dtype=np.uint64) & np.uint64(MASK)

    v = (
        u(seed) * np.uint64(0x9E3779B1)
        + u(a) * np.uint64(0x85EBCA77)
        + u(b) * np.uint64(0xC2B2AE3D)
        + u(c) * np.uint64(0x27D4EB2F)
        + u(d) * np.uint64(0x165667B1)
        + np.uint64(0x632BE5AB)
    ) & np.uint64(MASK)
    v ^= v >> np.uint64(15)
    v = (v * np.uint64(0x2C1B3C6D)) & np.uint64(MASK)
    v ^= v >> np.uint64(12)
    v = (v * np.uint64(0x297A2D39)) & np.uint64(MASK)
    v ^= v >> np.uint64(15)
    return v.astype(np.uint32)


def make_image(seed: int, index: int, h: int, w: int, c: int):
    """Image `index` of the set for `seed`: h x w x c uint8, pixel = h32(seed, index, y, x, c) >> 24."""
    import numpy as np

    y = np.arange(h, dtype=np.uint64)[:, None, None]
    x = np.arange(w, dtype=np.uint64)[None, :, None]
    ch = np.arange(c, dtype=np.uint64)[None, None, :]
    return (h32(seed, index, y, x, ch) >> np.uint32(24)).astype(np.uint8)


def make_images(seed: int, n: int, h: int, w: int, c: int):
    """`n` images, index 0..n-1, as a list of contiguous h x w x c uint8 arrays."""
    return [make_image(seed, i, h, w, c) for i in range(n)]


def unit(v):
    """Maps uint32 hash values to float64 in [-1, 1)."""
    import numpy as np

    return v.astype(np.float64) / 2.0**32 * 2.0 - 1.0


def make_training_set(seed: int, n: int, dim: int = 784, classes: int = 10):
    """Centred synthetic classification data, identical in Rust (whet-bench `train`).

    label[i] = h32(seed, 1, i, 0, 0) mod classes
    x[i, j]  = f32(0.5 * unit(h32(seed, 2, label[i], j, 0)) + 0.5 * unit(h32(seed, 3, i, j, 0)))
    where unit(v) = v / 2**32 * 2 - 1, computed in f64. Each class has its own centroid, so the
    network can learn it; the inputs have mean ~0 (BENCH-NOTES: uncentred inputs would not train at
    a fixed learning rate, and the timing would compare different work).
    """
    import numpy as np

    i = np.arange(n, dtype=np.uint64)
    labels = (h32(seed, 1, i, 0, 0) % np.uint32(classes)).astype(np.int64)
    j = np.arange(dim, dtype=np.uint64)[None, :]
    centroids = unit(h32(seed, 2, np.arange(classes, dtype=np.uint64)[:, None], j, 0))
    x = np.empty((n, dim), dtype=np.float32)
    step = 4096
    for s in range(0, n, step):
        e = min(n, s + step)
        noise = unit(h32(seed, 3, i[s:e, None], j, 0))
        x[s:e] = (0.5 * centroids[labels[s:e]] + 0.5 * noise).astype(np.float32)
    return x, labels


# --- CPU accounting -------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have been busy since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
    vals = [int(v) for v in fields]
    busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)
    return busy / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU seconds used by this process (all threads) so far."""
    return time.process_time()


class Window:
    """Measures wall time and how much CPU *other* processes used during a measurement.

    `other_cores` = (machine busy CPU time - our own CPU time) / wall time, in cores. Own CPU time of
    helper processes (workers) is added with `add_own`.
    """

    def __init__(self):
        self.extra_own = 0.0

    def __enter__(self):
        self.m0 = machine_busy_seconds()
        self.o0 = own_cpu_seconds()
        self.t0 = time.perf_counter()
        return self

    def add_own(self, seconds: float):
        self.extra_own += seconds

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.own = own_cpu_seconds() - self.o0 + self.extra_own
        busy = machine_busy_seconds() - self.m0
        self.other_cores = max(0.0, busy - self.own) / max(self.wall, 1e-9)
        return False


def wait_idle(max_wait: float = 60.0, threshold: float = 0.1, probe: float = 2.0) -> float:
    """Waits (up to `max_wait` seconds) until the machine is idle; returns the last busy reading in
    cores (the whole machine, this process included, which is idle while it sleeps)."""
    deadline = time.monotonic() + max_wait
    while True:
        m0 = machine_busy_seconds()
        t0 = time.perf_counter()
        time.sleep(probe)
        busy = (machine_busy_seconds() - m0) / (time.perf_counter() - t0)
        if busy <= threshold or time.monotonic() >= deadline:
            return busy


def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return -1


def emit(record: dict):
    """Prints one JSON line (the harness collects stdout)."""
    sys.stdout.write(json.dumps(record, sort_keys=False) + "\n")
    sys.stdout.flush()


def log(msg: str):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()
