"""Calibration of a model's test probabilities: the `command` stage of calibration.yaml.

Reads an evaluation's probabilities.csv (index,name,label,probability), writes to $PIPE_OUT:
reliability.csv (one row per probability bin), calibration_curve.csv and reliability.png (the
mean predicted probability of each bin against its observed positive rate, the diagonal being
perfect calibration) and metrics.json (Brier score, expected calibration error). Python's standard library only.
"""

import argparse
import csv
import json
import os
import struct
import zlib


def read(path):
    with open(path, newline="") as f:
        return [(int(r["label"]) > 0, float(r["probability"])) for r in csv.DictReader(f)]


def bins_of(rows, n):
    bins = [[] for _ in range(n)]
    for label, p in rows:
        bins[min(int(p * n), n - 1)].append((label, p))
    return bins


def png(path, width, height, pixels):
    """An 8-bit RGB PNG from rows of (r, g, b) tuples."""
    raw = b"".join(b"\0" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def draw(path, table, size=240, margin=20):
    img = [[(255, 255, 255)] * size for _ in range(size)]
    span = size - 2 * margin

    def put(x, y, colour, r=0):
        cx, cy = margin + round(x * span), size - margin - round(y * span)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                if 0 <= cx + dx < size and 0 <= cy + dy < size:
                    img[cy + dy][cx + dx] = colour

    for i in range(span + 1):
        t = i / span
        put(t, 0, (0, 0, 0))
        put(0, t, (0, 0, 0))
        put(t, t, (170, 170, 170))
    for row in table:
        if row["count"]:
            put(row["mean_probability"], row["positive_rate"], (31, 119, 180), r=3)
    png(path, size, size, img)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("probabilities")
    ap.add_argument("--bins", type=int, default=10)
    args = ap.parse_args()
    out = os.environ["PIPE_OUT"]
    rows = read(args.probabilities)
    table = []
    for i, b in enumerate(bins_of(rows, args.bins)):
        n = len(b)
        table.append({
            "bin": i,
            "lower": i / args.bins,
            "upper": (i + 1) / args.bins,
            "count": n,
            "mean_probability": sum(p for _, p in b) / n if n else 0.0,
            "positive_rate": sum(1 for l, _ in b if l) / n if n else 0.0,
        })
    with open(os.path.join(out, "reliability.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        for row in table:
            w.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    with open(os.path.join(out, "calibration_curve.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["predicted", "observed", "perfect"])
        for r in (r for r in table if r["count"]):
            p = round(r["mean_probability"], 6)
            w.writerow([p, round(r["positive_rate"], 6), p])
    draw(os.path.join(out, "reliability.png"), table)
    total = len(rows)
    brier = sum((p - l) ** 2 for l, p in rows) / total
    ece = sum(r["count"] / total * abs(r["mean_probability"] - r["positive_rate"]) for r in table)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"brier": round(brier, 6), "ece": round(ece, 6), "count": total}, f, indent=2)
    print(f"{total} probabilities in {args.bins} bins: Brier {brier:.4f}, ECE {ece:.4f}")


if __name__ == "__main__":
    main()
