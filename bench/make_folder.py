"""Writes N small RGB PNG images (seeded) and a filename,label CSV, for the no-op benchmarks."""
import os, sys
import numpy as np
from PIL import Image

out, n = sys.argv[1], int(sys.argv[2])
size = int(sys.argv[3]) if len(sys.argv) > 3 else 56
os.makedirs(os.path.join(out, "imgs"), exist_ok=True)
rng = np.random.default_rng(0)
base = rng.integers(0, 256, size=(64, size, size, 3), dtype=np.uint8)
with open(os.path.join(out, "labels.csv"), "w") as f:
    f.write("filename,label\n")
    for i in range(n):
        name = f"{i:06d}.png"
        img = base[i % 64].copy()
        img[i % size, :, :] = (i * 7) % 256          # make every image distinct
        img[:, (i // size) % size, 0] = (i * 13) % 256
        Image.fromarray(img).save(os.path.join(out, "imgs", name), compress_level=1)
        f.write(f"{name},{i % 2}\n")
