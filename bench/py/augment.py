"""Augmentation throughput of the Python peers, images per second, one JSON line per (op, size).

    bench/.venv/bin/python bench/py/augment.py --engine albumentations --threads 1

Engines: `albumentations` (2.x, each op called directly, the chain through `A.Compose`),
`torchvision` (transforms.v2 on uint8 CHW tensors), `opencv` (cv2 called directly, the fastest
since it skips the wrappers). Every engine runs the same ops on the same images: `--n-large`
256x256x3 and `--n-small` 28x28x1 uint8 images from `common.make_image(seed, index, ...)`, which
whet-bench generates identically.

Ops (random parameters drawn per image by each engine's own generator):
  hflip            horizontal flip, p = 1
  rotate           rotation by an angle uniform in [-15, 15] degrees, bilinear, border filled with 0
  resized_crop     random resized crop (scale 0.08-1, ratio 3/4-4/3) to 7/8 of the side (224 / 24),
                   bilinear, no antialiasing (torchvision's antialias is switched off to match)
  brightness_contrast  brightness and contrast factors uniform in +-0.2 (whet: its `brightness`
                   then `contrast` ops)
  gaussian_noise   additive Gaussian noise, sigma = 10 in pixel units (10/255), saturated to uint8
  blur             Gaussian blur, 3x3 kernel, sigma 1/3 (whet picks its kernel radius as
                   ceil(3 sigma), so this sigma gives every engine the same 3x3 kernel)
  chain            hflip p=0.5 -> rotate -> resized_crop -> brightness_contrast -> gaussian_noise
                   -> normalise to float32 ((x/255 - 0.5) / 0.25 per channel)

`--threads 2` runs two worker processes with one library thread each, each working on half of the
images (what a PyTorch DataLoader with two workers does): Python ops hold the GIL, so data
parallelism over processes is how these peers use two cores. Throughput counts both workers over
the wall time from a common start to the last finish.
"""

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OPS = ["hflip", "rotate", "resized_crop", "brightness_contrast", "gaussian_noise", "blur", "chain"]
SIZES = {"256x256x3": (256, 256, 3), "28x28x1": (28, 28, 1)}


def parse_size(name):
    """(h, w, c) of a size named HxWxC (--sizes takes any, for the scaling curve)."""
    try:
        h, w, c = (int(p) for p in name.split("x"))
    except ValueError:
        raise SystemExit(f"size {name!r} is not HxWxC, e.g. 256x256x3")
    if not (1 <= h <= 4096 and 1 <= w <= 4096 and c in (1, 3)):
        raise SystemExit(f"size {name!r}: sides 1 to 4096, C 1 or 3")
    return h, w, c


def images_for(size, n_large, n_small):
    """Images per figure: --n-large for 256x256x3, --n-small for 28x28x1, else as many as hold
    the pixels of n_large 256x256x3 images (at least 4, at most n_small), as whet-bench counts."""
    if size == (256, 256, 3):
        return n_large
    if size == (28, 28, 1):
        return n_small
    h, w, c = size
    n = n_large * 256 * 256 * 3 / (h * w * c)
    return min(max(int(math.floor(n + 0.5)), 4), max(n_small, 4))
MEAN, STD = 0.5, 0.25
BLUR_SIGMA = 1.0 / 3.0


def crop_side(side: int) -> int:
    return int(round(side * 7 / 8))


# --- engines --------------------------------------------------------------------------------------


def versions(engine):
    import cv2
    import numpy as np

    v = {"python": sys.version.split()[0], "numpy": np.__version__, "opencv": cv2.__version__}
    if engine == "albumentations":
        import albumentations as A

        v["albumentations"] = A.__version__
    if engine == "torchvision":
        import torch
        import torchvision

        v["torch"] = torch.__version__
        v["torchvision"] = torchvision.__version__
    return v


def library_threads(engine):
    import cv2

    t = {"cv2.getNumThreads": cv2.getNumThreads()}
    if engine == "torchvision":
        import torch

        t["torch.get_num_threads"] = torch.get_num_threads()
    return t


def configure_library_threads(engine):
    """One thread inside every library: parallelism comes from worker processes."""
    import cv2

    cv2.setNumThreads(1)
    cv2.setRNGSeed(1)
    if engine == "torchvision":
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(1)


def prepare_images(engine, imgs):
    if engine == "torchvision":
        import torch

        return [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in imgs]
    return imgs


def build_albumentations(op, h, w, c):
    import albumentations as A
    import cv2

    oh, ow = crop_side(h), crop_side(w)
    rotate = A.Rotate(
        limit=15, interpolation=cv2.INTER_LINEAR, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0
    )
    rrc = A.RandomResizedCrop(
        size=(oh, ow), scale=(0.08, 1.0), ratio=(0.75, 4 / 3), interpolation=cv2.INTER_LINEAR, p=1.0
    )
    bc = A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=1.0)
    noise = A.GaussNoise(std_range=(10 / 255, 10 / 255), mean_range=(0.0, 0.0), p=1.0)
    blur = A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(BLUR_SIGMA, BLUR_SIGMA), p=1.0)
    single = {
        "hflip": A.HorizontalFlip(p=1.0),
        "rotate": rotate,
        "resized_crop": rrc,
        "brightness_contrast": bc,
        "gaussian_noise": noise,
        "blur": blur,
    }
    if op == "chain":
        t = A.Compose(
            [
                A.HorizontalFlip(p=0.5),
                rotate,
                rrc,
                bc,
                noise,
                A.Normalize(mean=(MEAN,) * c, std=(STD,) * c, max_pixel_value=255.0, p=1.0),
            ],
            seed=1,
        )
    else:
        t = single[op]
        t.set_random_seed(1)
    return lambda im: t(image=im)["image"]


def build_torchvision(op, h, w, c):
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2

    oh, ow = crop_side(h), crop_side(w)
    rotate = v2.RandomRotation(degrees=15, interpolation=InterpolationMode.BILINEAR, fill=0)
    rrc = v2.RandomResizedCrop(
        size=(oh, ow),
        scale=(0.08, 1.0),
        ratio=(0.75, 4 / 3),
        interpolation=InterpolationMode.BILINEAR,
        antialias=False,
    )
    bc = v2.ColorJitter(brightness=0.2, contrast=0.2)
    # v2.GaussianNoise works on float images only: convert, add noise, convert back.
    noise = v2.Compose(
        [
            v2.ToDtype(torch.float32, scale=True),
            v2.GaussianNoise(mean=0.0, sigma=10 / 255, clip=True),
            v2.ToDtype(torch.uint8, scale=True),
        ]
    )
    single = {
        "hflip": v2.RandomHorizontalFlip(p=1.0),
        "rotate": rotate,
        "resized_crop": rrc,
        "brightness_contrast": bc,
        "gaussian_noise": noise,
        "blur": v2.GaussianBlur(kernel_size=3, sigma=BLUR_SIGMA),
    }
    if op == "chain":
        t = v2.Compose(
            [
                v2.RandomHorizontalFlip(p=0.5),
                rotate,
                rrc,
                bc,
                v2.ToDtype(torch.float32, scale=True),
                v2.GaussianNoise(mean=0.0, sigma=10 / 255, clip=True),
                v2.Normalize(mean=[MEAN] * c, std=[STD] * c),
            ]
        )
    else:
        t = single[op]
    return t


def build_opencv(op, h, w, c):
    import random

    import cv2
    import numpy as np

    rnd = random.Random(1)
    oh, ow = crop_side(h), crop_side(w)
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    noise_buf = np.empty((h, w, c), dtype=np.int16)
    identity = np.arange(256, dtype=np.float32)

    def hflip(im):
        return cv2.flip(im, 1)

    def rotate(im):
        m = cv2.getRotationMatrix2D(centre, rnd.uniform(-15.0, 15.0), 1.0)
        return cv2.warpAffine(
            im, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )

    def crop_box(ih, iw):
        # torchvision's RandomResizedCrop.get_params, on Python's random.
        area = ih * iw
        log_ratio = (math.log(3 / 4), math.log(4 / 3))
        for _ in range(10):
            target = area * rnd.uniform(0.08, 1.0)
            ar = math.exp(rnd.uniform(*log_ratio))
            cw = int(round(math.sqrt(target * ar)))
            ch = int(round(math.sqrt(target / ar)))
            if 0 < cw <= iw and 0 < ch <= ih:
                return rnd.randint(0, ih - ch), rnd.randint(0, iw - cw), ch, cw
        s = min(ih, iw)
        return (ih - s) // 2, (iw - s) // 2, s, s

    def resized_crop(im):
        i, j, ch, cw = crop_box(im.shape[0], im.shape[1])
        return cv2.resize(im[i : i + ch, j : j + cw], (ow, oh), interpolation=cv2.INTER_LINEAR)

    def brightness_contrast(im):
        alpha = 1.0 + rnd.uniform(-0.2, 0.2)
        beta = rnd.uniform(-0.2, 0.2) * 255.0
        lut = np.clip(identity * alpha + beta, 0, 255).astype(np.uint8)
        return cv2.LUT(im, lut)

    def gaussian_noise(im):
        buf = noise_buf[: im.shape[0], : im.shape[1], : (im.shape[2] if im.ndim == 3 else 1)]
        if im.ndim == 2:
            buf = buf[:, :, 0]
        cv2.randn(buf, 0, 10)
        return cv2.add(im, buf, dtype=cv2.CV_8U)

    def blur(im):
        return cv2.GaussianBlur(im, (3, 3), BLUR_SIGMA)

    scale = 1.0 / (255.0 * STD)
    shift = MEAN / STD

    def chain(im):
        if rnd.random() < 0.5:
            im = hflip(im)
        im = gaussian_noise(brightness_contrast(resized_crop(rotate(im))))
        out = im.astype(np.float32)
        out *= scale
        out -= shift
        return out

    return {
        "hflip": hflip,
        "rotate": rotate,
        "resized_crop": resized_crop,
        "brightness_contrast": brightness_contrast,
        "gaussian_noise": gaussian_noise,
        "blur": blur,
        "chain": chain,
    }[op]


BUILDERS = {
    "albumentations": build_albumentations,
    "torchvision": build_torchvision,
    "opencv": build_opencv,
}


# --- measuring ------------------------------------------------------------------------------------


class Local:
    """Runs passes in this process (one thread)."""

    def __init__(self, engine, seed, counts):
        configure_library_threads(engine)
        self.engine = engine
        self.images = {
            s: prepare_images(engine, common.make_images(seed, counts[s], *parse_size(s)))
            for s in counts
        }
        self.fns = {}

    def run(self, op, size, passes):
        """Applies `op` `passes` times to every image; returns (images done, wall s, own cpu s)."""
        n, t0, t1, cpu = self.run_stamped(op, size, passes)
        return n, t1 - t0, cpu

    def run_stamped(self, op, size, passes):
        """As `run`, with the start and end instants (CLOCK_MONOTONIC, comparable across
        processes) instead of the wall time."""
        key = (op, size)
        if key not in self.fns:
            self.fns[key] = BUILDERS[self.engine](op, *parse_size(size))
        fn = self.fns[key]
        imgs = self.images[size]
        t0 = time.perf_counter()
        c0 = time.process_time()
        for _ in range(passes):
            for im in imgs:
                fn(im)
        return len(imgs) * passes, t0, time.perf_counter(), time.process_time() - c0

    def close(self):
        pass


def worker_main(engine, seed, counts, rank, nworkers, conn, barrier):
    common.set_thread_env(1)
    local = Local(engine, seed, counts)
    for s in counts:
        local.images[s] = local.images[s][rank::nworkers]
    conn.send(("ready", library_threads(engine)))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        _, op, size, passes = msg
        barrier.wait()
        conn.send(local.run_stamped(op, size, passes))


class Pool:
    """Two (or more) worker processes, each with one library thread and a share of the images."""

    def __init__(self, engine, seed, counts, n):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(n + 1)
        self.conns, self.procs = [], []
        for rank in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(
                target=worker_main, args=(engine, seed, counts, rank, n, b, self.barrier)
            )
            p.start()
            self.conns.append(a)
            self.procs.append(p)
        self.worker_threads = [c.recv()[1] for c in self.conns]

    def run(self, op, size, passes):
        for c in self.conns:
            c.send(("run", op, size, passes))
        self.barrier.wait()
        results = [c.recv() for c in self.conns]
        # Wall time from the first worker's start to the last one's end, from the workers' own
        # clocks (perf_counter is CLOCK_MONOTONIC, shared by all processes): timing in this
        # process would count its own scheduling delays on a busy machine.
        wall = max(r[2] for r in results) - min(r[1] for r in results)
        return sum(r[0] for r in results), wall, sum(r[3] for r in results)

    def close(self):
        for c in self.conns:
            c.send(("stop",))
        for p in self.procs:
            p.join()


def measure(runner, op, size, repeats, min_time, max_other, retries):
    # First pass: cold (lazy initialisation, first touch of output buffers), reported separately.
    n, wall, _ = runner.run(op, size, 1)
    first_ips = n / wall
    # Calibrate on a warm pass: the cold one can be 100x slower (worker start-up, lazy imports),
    # which left timed windows of a few milliseconds, too short for the load accounting.
    _, warm, _ = runner.run(op, size, 1)
    passes = max(1, math.ceil(min_time / max(warm, 1e-6)))
    ips, others, retried = [], [], 0
    while len(ips) < repeats:
        with common.Window() as win:
            n, wall, own = runner.run(op, size, passes)
            win.add_own(own)
        # The window's own time covers this (parent) process; workers report theirs.
        if win.other_cores > max_other and retried < retries:
            retried += 1
            time.sleep(1.0)
            continue
        ips.append(n / wall)
        others.append(round(win.other_cores, 3))
    return {
        "first_ips": first_ips,
        "median_ips": common.median(ips),
        "ips": ips,
        "passes": passes,
        "other_cores": others,
        "retried": retried,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--engine", choices=sorted(BUILDERS), required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n-large", type=int, default=32, help="number of 256x256x3 images")
    ap.add_argument("--n-small", type=int, default=1024, help="number of 28x28x1 images")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per timed repeat")
    ap.add_argument("--max-other", type=float, default=0.1, help="cores; retry above this")
    ap.add_argument("--retries", type=int, default=2, help="retries per op when the machine is busy")
    args = ap.parse_args()

    env = common.set_thread_env(1)
    sizes = args.sizes.split(",")
    counts = {s: images_for(parse_size(s), args.n_large, args.n_small) for s in sizes}
    if args.threads == 1:
        runner = Local(args.engine, args.seed, counts)
        lib_threads = [library_threads(args.engine)]
    else:
        runner = Pool(args.engine, args.seed, counts, args.threads)
        lib_threads = runner.worker_threads
    base = {
        "bench": "augment",
        "engine": args.engine,
        "threads": args.threads,
        "parallelism": f"{args.threads} process(es) x 1 library thread",
        "library_threads": lib_threads,
        "env": env,
        "versions": versions(args.engine),
        "seed": args.seed,
    }
    try:
        for size in sizes:
            for op in args.ops.split(","):
                common.log(f"augment {args.engine} t={args.threads} {size} {op}")
                r = measure(
                    runner, op, size, args.repeats, args.min_time, args.max_other, args.retries
                )
                common.emit(
                    {**base, "op": op, "size": size, "images": counts[size], "unit": "images/s", **r}
                )
    finally:
        runner.close()


if __name__ == "__main__":
    main()
