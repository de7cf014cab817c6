#!/usr/bin/env python3
"""Reference dHash values from Python ImageHash 4.3.2 (Pillow) for the parity test in
src/data/dhash.rs.

    pip install ImageHash==4.3.2 pillow numpy
    python scripts/imagehash_reference.py [--smile DIR]

Writes tests/fixtures/imagehash/generated.csv: images whose pixels come from a tiny integer
formula (splitmix64-driven gradients, blobs and noise) that the Rust test regenerates bit for
bit, so no pixels are committed; and tests/fixtures/imagehash/smile.csv: file name and hash for
every 13th file (sorted order) of the SMILE face crops, when that directory exists (the images
themselves are never committed).
"""

import argparse
import csv
import os
import sys

import imagehash
import numpy as np
from PIL import Image

MASK = (1 << 64) - 1
N_GENERATED = 800
SMILE_STEP = 13

# (height, width, channels): odd sizes, both channel counts, identity and upscaling cases.
SIZES = [
    (56, 56, 3), (56, 56, 3), (56, 56, 1), (64, 64, 1), (37, 23, 3), (23, 37, 1),
    (8, 9, 1), (8, 9, 3), (16, 9, 3), (8, 30, 1), (5, 7, 3), (3, 4, 1),
    (100, 80, 3), (61, 47, 1), (128, 128, 3), (9, 8, 1),
]
HASH_SIZES = [8, 8, 8, 8, 8, 8, 4, 5, 7, 16]


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def generated_image(index):
    """Returns (pixels HxWxC uint8, hash_size); mirrored exactly by the Rust test."""
    rng = SplitMix64(index * 0x100000001B3 + 12345)
    h, w, c = SIZES[rng.next() % len(SIZES)]
    hash_size = HASH_SIZES[rng.next() % len(HASH_SIZES)]
    kind = rng.next() % 8
    chans = []
    for _ in range(c):
        base = rng.next() % 256
        gx = rng.next() % 33 - 16
        gy = rng.next() % 33 - 16
        if kind == 0:
            gx = gy = 0
        chans.append((base, gx, gy))
    nb = 0 if kind == 0 else rng.next() % 5
    blobs = []
    for _ in range(nb):
        cx = rng.next() % w
        cy = rng.next() % h
        r2 = 1 + rng.next() % (h * w)
        amps = [rng.next() % 513 - 256 for _ in range(c)]
        blobs.append((cx, cy, r2, amps))
    na = rng.next() % 3 if kind == 0 else rng.next() % 24
    out = np.zeros((h, w, c), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            for ch in range(c):
                base, gx, gy = chans[ch]
                acc = base * 256 + gx * x * 64 + gy * y * 64
                for cx, cy, r2, amps in blobs:
                    d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy)
                    a = amps[ch]
                    term = abs(a) * 256 * r2 // (r2 + d2)
                    acc += term if a >= 0 else -term
                v = acc >> 8
                if na > 0:
                    v += rng.next() % (2 * na + 1) - na
                out[y, x, ch] = min(255, max(0, v))
    return out, hash_size


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser()
    parser.add_argument("--smile", default=os.path.join(root, "..", "shared", "data", "smile"))
    parser.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "imagehash"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    assert imagehash.__version__ == "4.3.2", imagehash.__version__

    with open(os.path.join(args.out, "generated.csv"), "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["index", "height", "width", "channels", "hash_size", "hash"])
        for i in range(N_GENERATED):
            px, hs = generated_image(i)
            h, w, c = px.shape
            img = Image.fromarray(px[:, :, 0] if c == 1 else px, "L" if c == 1 else "RGB")
            wr.writerow([i, h, w, c, hs, str(imagehash.dhash(img, hash_size=hs))])

    labels = os.path.join(args.smile, "labels.csv")
    if not os.path.exists(labels):
        print(f"{args.smile} absent: smile.csv not written", file=sys.stderr)
        return
    with open(labels) as f:
        names = sorted(row["filename"] for row in csv.DictReader(f))
    with open(os.path.join(args.out, "smile.csv"), "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["filename", "hash"])
        for name in names[::SMILE_STEP]:
            with Image.open(os.path.join(args.smile, "images", name)) as img:
                wr.writerow([name, str(imagehash.dhash(img))])


if __name__ == "__main__":
    main()
