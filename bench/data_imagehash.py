#!/usr/bin/env python3
"""Python reference for bench/data.sh: dHash (ImageHash 4.3.2) of every image of a challenge
raw file, then exact-duplicate groups via a dict of equal hashes.

    python3 bench/data_imagehash.py db_train.raw --hashes-out py_hashes.txt

Prints `PY_RESULT {json}` with the seconds and images/s of read + hash + group (the same work as
pipe's source + hash + dedup at radius 0), and writes one hex hash per line in image order.
"""

import argparse
import json
import time

import imagehash
import numpy as np
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--height", type=int, default=56)
    ap.add_argument("--width", type=int, default=56)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--hashes-out", default=None)
    a = ap.parse_args()
    assert imagehash.__version__ == "4.3.2", imagehash.__version__

    t0 = time.perf_counter()
    x = np.fromfile(a.raw, dtype=np.uint8).reshape(-1, a.height, a.width, a.channels)
    t_read = time.perf_counter() - t0
    mode = "RGB" if a.channels == 3 else "L"
    hashes = []
    for img in x:
        im = Image.fromarray(img if a.channels == 3 else img[:, :, 0], mode)
        hashes.append(str(imagehash.dhash(im)))
    t_hash = time.perf_counter() - t0
    groups = {}
    for i, h in enumerate(hashes):
        groups.setdefault(h, []).append(i)
    dup = [g for g in groups.values() if len(g) > 1]
    total = time.perf_counter() - t0
    n = len(x)
    res = dict(images=n, read_s=t_read, hash_s=t_hash - t_read, group_s=total - t_hash,
               seconds=total, images_per_s=n / total, duplicate_groups=len(dup),
               copies=sum(len(g) - 1 for g in dup))
    print("PY_RESULT " + json.dumps(res), flush=True)
    if a.hashes_out:
        with open(a.hashes_out, "w") as f:
            f.write("\n".join(hashes) + "\n")


if __name__ == "__main__":
    main()
