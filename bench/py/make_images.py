"""Writes the folder-loading benchmark's image files, deterministically from a seed.

    bench/.venv/bin/python bench/py/make_images.py --out bench/data [--n 2000] [--seed 7]

`OUT/images-<seed>-<n>-<W>x<H>/png/class_<k>/<i:05>.png` and the same images as JPEG (quality
90, 4:2:0 chroma subsampling, PIL's defaults otherwise) under `.../jpeg/`: `n` RGB images of
`W x H` (default 320 x 240, a phone photo scaled down) in 10 class folders. Each image is smooth
colour gradients and a few soft blobs with mild noise (sigma 4), so the files compress about as
photographs do (PNG about 1.7x, JPEG about 15 KB each) instead of as pure noise or flat colour. numpy's PCG64 generator seeded with `seed` makes the
pixels; both sides read the same files, so no cross-language generator is needed.

Existing folders with the same parameters are kept (idempotent); a folder is written under a
temporary name, then renamed. Prints one JSON line describing the files.
"""

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CLASSES = 10
FORMATS = {"png": ("png", {}), "jpeg": ("jpg", {"quality": 90})}


def make_image(rng, w, h):
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for ch in range(3):
        fx, fy = rng.uniform(0.5, 3.0, 2) * 2 * np.pi
        px, py = rng.uniform(0, 2 * np.pi, 2)
        img[:, :, ch] = 128 + 60 * np.sin(fx * xx / w + px) * np.cos(fy * yy / h + py)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.05, 0.25) * min(w, h)
        colour = rng.uniform(-90, 90, 3).astype(np.float32)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[:, :, None] * colour
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    import numpy as np
    from PIL import Image

    root = os.path.join(args.out, f"images-{args.seed}-{args.n}-{args.width}x{args.height}")
    info = {"bench": "images", "root": root, "n": args.n, "size": [args.width, args.height],
            "classes": CLASSES, "formats": {}}
    for fmt, (ext, opts) in FORMATS.items():
        folder = os.path.join(root, fmt)
        if not os.path.isdir(folder):
            tmp = folder + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            rng = np.random.default_rng(args.seed)
            for i in range(args.n):
                d = os.path.join(tmp, f"class_{i % CLASSES}")
                os.makedirs(d, exist_ok=True)
                img = Image.fromarray(make_image(rng, args.width, args.height))
                img.save(os.path.join(d, f"{i:05}.{ext}"), **opts)
            os.rename(tmp, folder)
            common.log(f"make_images: wrote {args.n} {fmt} files to {folder}")
        size = sum(
            os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(folder) for f in fs
        )
        info["formats"][fmt] = {"folder": folder, "bytes": size}
    print(json.dumps(info))


if __name__ == "__main__":
    main()
