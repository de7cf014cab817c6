"""Malformed-input campaign for `pipe` (issue 8): generates bad pipelines, --set values, raw
files, image folders and label CSVs, runs `pipe validate` / `pipe run` on each, and checks that
every one fails cleanly: exit 2, no panic, stderr naming the file and a line, field or index,
short and free of raw control bytes. Prints a table per category; exits 1 if any case fails.

Usage: python3 bench/campaign.py PATH/TO/pipe   (bench/campaign.sh builds it and calls this)
"""

import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import defaultdict

PIPE = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 60

# A position `file:line:col`, a `line N`, an `image N`, or a dotted field path.
LOCATOR = re.compile(r":\d+:\d+|line \d+|image \d+|stages\.[^\s:]+|params\.\w+|\bname\b|include")


def png(w, h, seed=0):
    """A small RGB PNG, written without Pillow."""
    rows = b"".join(
        b"\x00" + bytes(((x * 17 + y * 5 + seed * 40 + c * 60) % 256) for x in range(w) for c in range(3))
        for y in range(h)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


SYNTH = """stages:
  faces:
    kind: source
    format: synthetic
    count: 40
    height: 16
    width: 16
    exact_duplicates: 0
    near_duplicates: 0
    conflicting_duplicates: 0
"""

FULL = """name: full
params:
  seed: 3
stages:
  src:
    kind: source
    format: raw
    images: x.raw
    labels: l.txt
    height: 4
    width: 4
  hashes:
    kind: hash
    inputs: {data: src}
  groups:
    kind: dedup
    inputs: {hashes: hashes, data: src}
  split:
    kind: split
    seed: ${params.seed}
    inputs: {data: src, groups: groups}
  train:
    kind: train
    model: b1
    inputs: {data: src, split: split}
"""


def stage(body, sid="a"):
    return f"stages:\n  {sid}:\n" + "".join(f"    {line}\n" for line in body.splitlines())


# ---- cases: (category, name, setup(dir) -> args, expected file substring) ----
CASES = []


def case(category, name, expect_file):
    def register(setup):
        CASES.append((category, name, setup, expect_file))
        return setup

    return register


def yaml_case(name, text, cmd="validate", sets=()):
    def setup(d):
        data = text if isinstance(text, bytes) else text.encode()
        open(os.path.join(d, "p.yaml"), "wb").write(data)
        args = [cmd, "p.yaml"]
        for s in sets:
            args += ["--set", s]
        return args

    CASES.append(("yaml" if not sets else "--set", name, setup, "p.yaml" if not sets else None))


# YAML syntax and structure
yaml_case("unclosed bracket", "stages:\n  a: [1, 2\n")
yaml_case("bad indentation", "stages:\n  a:\n    kind: hash\n   b: 1\n")
yaml_case("tab indentation", "stages:\n\ta:\n\t\tkind: hash\n")
yaml_case("duplicate key", "stages:\n  a:\n    kind: hash\n  a:\n    kind: hash\n")
yaml_case("alias", "params:\n  x: &v 1\n  y: *v\nstages: {}\n")
yaml_case("second document", SYNTH + "---\nstages: {}\n")
yaml_case("second empty document", SYNTH + "---\n")
yaml_case("non-UTF-8 byte", b"stages:\n  a:\n    kind: so\xffurce\n")
yaml_case("latin-1 comment", b"# caf\xe9\nstages: {}\n")
yaml_case("BOM before an unknown key", "\ufeffnmae: x\nstages: {}\n")
yaml_case("top level is a list", "- a\n- b\n")
yaml_case("top level is a scalar", "hello\n")
yaml_case("empty file", "")
yaml_case("unknown top-level key", "stagess:\n  a: 1\n")
yaml_case("integer top-level key", "1: 2\nstages: {}\n")
yaml_case("name not a string", "name: [a]\nstages: {}\n")
yaml_case("name with a slash", "name: a/b\nstages: {}\n")
yaml_case("empty name", "name: ''\nstages: {}\n")
yaml_case("name ..", "name: ..\nstages: {}\n")
yaml_case("include missing", "include: [nope.yaml]\nstages: {}\n")
yaml_case("include loop", "include: [p.yaml]\nstages: {}\n")
yaml_case("include not a list", "include: {a: 1}\nstages: {}\n")
yaml_case("include /dev/zero", "include: [/dev/zero]\nstages: {}\n")
yaml_case("params not a mapping", "params: [1]\nstages: {}\n")
yaml_case("stages not a mapping", "stages: [a, b]\n")
# stage ids
for sid, label in [
    ('""', "empty id"),
    ('" "', "blank id"),
    ("/", "slash id"),
    ("../x", "parent id"),
    ("../../../../victim", "deep parent id"),
    ("a b", "space in id"),
    (".x", "dot-leading id"),
    ("-x", "dash-leading id"),
    ("a..b", "double dot id"),
    ("x" * 100, "100-byte id"),
    ("é", "non-ASCII id"),
    ('"a\\0b"', "NUL in id"),
    ('"a\\nb"', "newline in id"),
    ("1", "integer id"),
]:
    yaml_case(label, stage("kind: source\nformat: synthetic", sid))
# stage bodies
yaml_case("stage not a mapping", "stages:\n  a: 3\n")
yaml_case("missing kind", stage("format: raw"))
yaml_case("unknown kind", stage("kind: sorce"))
yaml_case("kind not a string", stage("kind: [a]"))
yaml_case("unknown field", stage("kind: source\nformat: raw\nimages: x\nhieght: 5"))
yaml_case("wrong type", stage("kind: source\nformat: raw\nimages: x\nheight: big"))
yaml_case("unknown variant", stage("kind: source\nformat: rw\nimages: x"))
yaml_case("integer field name", stage("kind: source\nformat: synthetic\n1: 2"))
yaml_case(".inf", stage("kind: split\ntrain: .inf"))
yaml_case(".nan", stage("kind: split\nval: .nan"))
yaml_case("1e400", stage("kind: evaluate\nthreshold: 1e400"))
yaml_case("-.inf nested", stage("kind: train\nmodel: b1\nplateau: {factor: -.inf}"))
yaml_case("count at i64::MAX", stage("kind: source\nformat: synthetic\ncount: 9223372036854775807"))
yaml_case("count 100 million", stage("kind: source\nformat: synthetic\ncount: 100000000"))
yaml_case("count beyond u64", stage("kind: source\nformat: synthetic\ncount: 18446744073709551616"))
yaml_case("negative count", stage("kind: source\nformat: synthetic\ncount: -1"))
yaml_case("dataset over 32 GiB", stage("kind: source\nformat: synthetic\ncount: 5000000\nheight: 1024"))
yaml_case("height 0", stage("kind: source\nformat: raw\nimages: x\nheight: 0"))
yaml_case("height 100000", stage("kind: source\nformat: folder\ndir: d\nheight: 100000"))
yaml_case("channels 2", stage("kind: source\nformat: raw\nimages: x\nchannels: 2"))
yaml_case("plants overflow", stage("kind: source\nformat: synthetic\nexact_duplicates: 18446744073709551615\nnear_duplicates: 2"))
yaml_case("hash_size 1", stage("kind: hash\nhash_size: 1"))
yaml_case("radius 9", stage("kind: dedup\nradius: 9"))
yaml_case("figure_groups huge", stage("kind: dedup\nfigure_groups: 9223372036854775807"))
yaml_case("figure_pairs huge", stage("kind: filter_conflicts\nfigure_pairs: 99999999"))
yaml_case("batch_size huge", stage("kind: train\nmodel: b1\nbatch_size: 100000000"))
yaml_case("epochs huge", stage("kind: train\nmodel: b1\nepochs: 4000000000"))
yaml_case("epochs 0", stage("kind: train\nmodel: b1\nepochs: 0"))
yaml_case("negative lr", stage("kind: train\nmodel: b1\nlr: -1"))
yaml_case("dropout 1.5", stage("kind: train\nmodel: b1\ndropout: 1.5"))
yaml_case("split does not sum to 1", stage("kind: split\ntrain: 0.5\nval: 0.1\ntest: 0.1"))
yaml_case("threshold 2", stage("kind: evaluate\nthreshold: 2"))
yaml_case("per_class 0", stage("kind: analyze\nper_class: 0"))
yaml_case("zoom_range 5", stage("kind: augment\nzoom_range: 5"))
yaml_case("shift range 3", stage("kind: augment\nwidth_shift_range: 3"))
yaml_case("unknown input stage", stage("kind: hash\ninputs: {data: nope}"))
yaml_case("input of the wrong kind", FULL.replace("{hashes: hashes, data: src}", "{hashes: src, data: src}"))
yaml_case("unknown input slot", FULL.replace("{data: src}\n  groups", "{dat: src}\n  groups"))
yaml_case("bad input slot name", FULL.replace("{data: src, split: split}", "{data: src, split: split, ../m: src}"))
yaml_case("cycle", "stages:\n  h:\n    kind: hash\n    inputs: {data: g}\n  g:\n    kind: dedup\n    inputs: {hashes: h, data: h}\n")
yaml_case("unresolved param", FULL.replace("${params.seed}", "${params.sed}"))
yaml_case("unterminated ${", FULL.replace("${params.seed}", "'${params.seed'"))
yaml_case("1 MB value", stage("kind: source\nformat: raw\nimages: x\nheight: " + "x" * (1 << 20)))
yaml_case("1 MB kind", stage("kind: " + "k" * (1 << 20)))
yaml_case("1 MB key", stage("kind: hash\n" + "f" * (1 << 20) + ": 1"))
yaml_case("run: bad id", stage("kind: source\nformat: synthetic", "../../victim"), cmd="run")
yaml_case("run: huge count", stage("kind: source\nformat: synthetic\ncount: 9223372036854775807"), cmd="run")

# --set
for name, sets in [
    ("no =", ["stages.faces"]),
    ("bad root", ["stage.faces.count=3"]),
    ("path too short", ["stages.faces=3"]),
    ("empty path segment", ["stages..count=3"]),
    ("unknown parameter", ["params.nope=1"]),
    ("unknown stage", ["stages.facs.count=3"]),
    ("unknown field", ["stages.faces.cont=3"]),
    ("wrong type", ["stages.faces.height=abc"]),
    ("unknown variant", ["stages.faces.rule=nope"]),
    ("value syntax error", ["stages.faces.count=[1,"]),
    ("count at i64::MAX", ["stages.faces.count=9223372036854775807"]),
    ("count 100 million", ["stages.faces.count=100000000"]),
    ("negative count", ["stages.faces.count=-1"]),
    (".inf", ["stages.faces.label_noise=.inf"]),
    (".nan", ["stages.faces.label_noise=.nan"]),
    ("1e400", ["stages.faces.label_noise=1e400"]),
    ("label_noise 2", ["stages.faces.label_noise=2"]),
    ("100 KB value", ["stages.faces.rule=" + "y" * 100_000]),
    ("100 KB path", ["z" * 100_000 + "=1"]),
    ("map into a scalar", ["stages.faces.count.x=1"]),
    ("height 0", ["stages.faces.height=0"]),
    ("a second document in the value", ["stages.faces.count=1\n---\n2"]),
]:
    for cmd in ("validate", "run"):
        yaml_case(f"{name} ({cmd})", SYNTH, cmd=cmd, sets=sets)


# raw
def raw_case(name, images=None, labels=None, yaml_images="x.raw", yaml_labels="l.txt", expect="x.raw", special=None):
    def setup(d):
        if images is not None:
            open(os.path.join(d, "x.raw"), "wb").write(images)
        if labels is not None:
            open(os.path.join(d, "l.txt"), "wb").write(labels)
        if special:
            special(d)
        text = f"stages:\n  src:\n    kind: source\n    format: raw\n    images: {yaml_images}\n"
        if yaml_labels:
            text += f"    labels: {yaml_labels}\n"
        text += "    height: 4\n    width: 4\n"
        open(os.path.join(d, "p.yaml"), "w").write(text)
        return ["run", "p.yaml"]

    CASES.append(("raw", name, setup, expect))


ONE = bytes(48)
raw_case("/dev/zero", yaml_images="/dev/zero", yaml_labels=None, expect="/dev/zero")
raw_case("/dev/urandom labels", ONE, yaml_labels="/dev/urandom", expect="/dev/urandom")
raw_case("FIFO images", yaml_labels=None, special=lambda d: os.mkfifo(os.path.join(d, "x.raw")))
raw_case("FIFO labels", ONE, expect="l.txt", special=lambda d: os.mkfifo(os.path.join(d, "l.txt")))
raw_case("images a directory", yaml_labels=None, special=lambda d: os.mkdir(os.path.join(d, "x.raw")))
raw_case("labels a directory", ONE, expect="l.txt", special=lambda d: os.mkdir(os.path.join(d, "l.txt")))
raw_case("empty images, no labels", b"", yaml_labels=None)
raw_case("empty images and labels", b"", b"")
raw_case("not a multiple of the shape", bytes(50), b"1\n")
raw_case("missing images", None, b"1\n")
raw_case("missing labels", ONE, None, expect="l.txt")
raw_case("too few labels", bytes(96), b"1\n", expect="l.txt")
raw_case("label 2", bytes(96), b"1\n2\n", expect="l.txt")
raw_case("NUL garbage label", bytes(96), b"1\n\x00\x00\x1b[2J\n", expect="l.txt")
raw_case("non-UTF-8 label", bytes(96), b"1\n\xff\n", expect="l.txt")
raw_case("1 MB label line", ONE, b"1" * (1 << 20) + b"\n", expect="l.txt")


# folder and CSV
def folder_case(category, name, csv=None, images=None, expect="imgs", yaml_extra="", special=None, dir_name="imgs"):
    def setup(d):
        imgs = os.path.join(d, "imgs")
        os.mkdir(imgs)
        for fname, data in (images if images is not None else [(f"{i}.png", png(6, 6, i)) for i in range(3)]):
            path = os.path.join(imgs.encode(), fname.encode("utf-8", "surrogateescape") if isinstance(fname, str) else fname)
            open(path, "wb").write(data)
        if csv is not None:
            open(os.path.join(d, "l.csv"), "wb").write(csv)
        if special:
            special(d)
        text = f"stages:\n  src:\n    kind: source\n    format: folder\n    dir: {dir_name}\n"
        if csv is not None or (special and "csv" in name.lower()):
            text += "    labels: l.csv\n"
        text += f"    height: 4\n    width: 4\n{yaml_extra}"
        open(os.path.join(d, "p.yaml"), "w").write(text)
        return ["run", "p.yaml"]

    CASES.append((category, name, setup, expect))


JPEG_HEADER = b"\xff\xd8\xff\xe0" + bytes(20)
folder_case("folder", "missing folder", dir_name="nope", expect="nope")
folder_case("folder", "folder is a file", dir_name="p.yaml", expect="p.yaml")
folder_case("folder", "empty folder", images=[])
folder_case("folder", "corrupt PNG", images=[("0.png", png(6, 6)), ("1.png", b"not a png")])
folder_case("folder", "truncated PNG", images=[("0.png", png(6, 6)[:40])])
folder_case("folder", "zero-byte PNG", images=[("0.png", b"")])
folder_case("folder", "random JPEG", images=[("0.jpg", JPEG_HEADER + bytes(range(256)) + b"\xff\xd9")])
folder_case("folder", "JPEG without an end marker", images=[("0.jpg", JPEG_HEADER + bytes(100))])
folder_case("folder", "PNG with a 1 Gpx header", images=[("0.png", png(6, 6)[:16] + struct.pack(">II", 40000, 40000) + png(6, 6)[24:])])
folder_case("folder", "non-UTF-8 file name", images=[(b"bad\xff.png", png(6, 6))])
folder_case("folder", "FIFO image", images=[("0.png", png(6, 6))], special=lambda d: os.mkfifo(os.path.join(d, "imgs", "1.png")))
folder_case("folder", "directory named x.png", images=[("0.png", png(6, 6))], special=lambda d: os.mkdir(os.path.join(d, "imgs", "x.png")))
folder_case("folder", "symlink to /dev/zero", images=[("0.png", png(6, 6))], special=lambda d: os.symlink("/dev/zero", os.path.join(d, "imgs", "z.png")))
folder_case("folder", "CSV naming a missing image", csv=b"0.png,1\nmissing.png,0\n")
folder_case("folder", "CSV naming a directory", csv=b"0.png,1\nsub,0\n", special=lambda d: os.mkdir(os.path.join(d, "imgs", "sub")))
CSV_OK_ROWS = b"0.png,1\n1.png,0\n2.png,1\n"
for name, csv, extra in [
    ("first row label 2", b"0.png,2\n1.png,0\n2.png,1\n", ""),
    ("first row extra column", b"0.png,1,x\n1.png,0\n2.png,1\n", ""),
    ("later row extra column", b"0.png,1\n1.png,0,x\n", ""),
    ("row without a label", b"0.png,1\n1.png\n", ""),
    ("header: false with a header", b"filename,label\n" + CSV_OK_ROWS, "    header: false\n"),
    ("unknown header names", b"file_id,value\n" + CSV_OK_ROWS, ""),
    ("non-UTF-8 CSV", b"0.png,1\n1\xff.png,0\n", ""),
    ("conflicting duplicate", b"0.png,1\n1.png,0\n0.png,0\n", ""),
    ("identical duplicate", b"0.png,1\n1.png,0\n1.png,0\n", ""),
    ("NUL garbage label", b"0.png,1\n1.png,\x00\x00\x1b[2J\n", ""),
    ("empty file name", b"0.png,1\n,0\n", ""),
    ("quoted newline in a name", b'0.png,1\n"1.png\nx",0\n', ""),
    ("only a header", b"filename,label\n", ""),
    ("empty CSV", b"", ""),
    ("1 MB garbage row", b"0.png,1\n1.png," + b"\x01" * (1 << 20) + b"\n", ""),
    ("header: maybe", CSV_OK_ROWS, "    header: maybe\n"),
]:
    folder_case("csv", name, csv=csv, expect="l.csv" if "header: maybe" not in name else "p.yaml", yaml_extra=extra)
folder_case("csv", "CSV is a directory", expect="l.csv", special=lambda d: os.mkdir(os.path.join(d, "l.csv")))
folder_case("csv", "CSV is a FIFO", expect="l.csv", special=lambda d: os.mkfifo(os.path.join(d, "l.csv")))
folder_case("csv", "CSV missing", expect="l.csv", special=lambda d: None)


def run_case(category, name, setup, expect_file):
    with tempfile.TemporaryDirectory() as d:
        args = setup(d)
        start = time.time()
        try:
            p = subprocess.run([PIPE] + args, cwd=d, capture_output=True, timeout=TIMEOUT, env={**os.environ, "PIPE_CACHE": os.path.join(d, "cache")})
            code, err = p.returncode, p.stderr.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            code, err = "timeout", ""
        secs = time.time() - start
    problems = []
    if code == 101 or "panicked" in err:
        problems.append("panic")
    if code != 2:
        problems.append(f"exit {code}")
    if expect_file and expect_file not in err:
        problems.append(f"no `{expect_file}` in message")
    if expect_file is None and "--set" not in err and "p.yaml" not in err:
        problems.append("no file in message")
    located = bool(LOCATOR.search(err))
    if len(err) > 4000:
        problems.append(f"{len(err)} bytes of stderr")
    if any(ord(c) < 32 and c != "\n" for c in err):
        problems.append("control bytes in stderr")
    return code, located, problems, secs, err


def main():
    per = defaultdict(lambda: defaultdict(int))
    failures = []
    start = time.time()
    for category, name, setup, expect_file in CASES:
        code, located, problems, secs, err = run_case(category, name, setup, expect_file)
        c = per[category]
        c["cases"] += 1
        c["exit 2"] += code == 2
        c["panics"] += "panic" in problems
        c["timeouts"] += code == "timeout"
        c["file named"] += not any(p.startswith("no ") for p in problems)
        c["located"] += located
        c["whole file"] += (not located) and not any(p.startswith("no ") for p in problems)
        c["max s"] = max(c["max s"], secs)
        if problems:
            failures.append((category, name, problems, err.strip().splitlines()[:3]))
        if os.environ.get("VERBOSE"):
            print(f"{category:7} {name:40} exit {code} {problems} | {err.strip().splitlines()[0][:110] if err.strip() else ''}")
    cols = ["cases", "exit 2", "panics", "timeouts", "file named", "located", "whole file"]
    print(f"| category | {' | '.join(cols)} | slowest (s) |")
    print("|---" * (len(cols) + 2) + "|")
    total = defaultdict(int)
    for cat, c in per.items():
        print(f"| {cat} | " + " | ".join(str(c[k]) for k in cols) + f" | {c['max s']:.2f} |")
        for k in cols:
            total[k] += c[k]
    print("| **all** | " + " | ".join(f"**{total[k]}**" for k in cols) + f" | |")
    print(f"\n{len(CASES)} cases in {time.time() - start:.0f} s; located = the message gives a line:col, `line N`, `image N` or a field path; whole file = the file itself is the problem (missing, empty, a FIFO, device or directory, wrong size), named with no line")
    for cat, name, problems, err in failures:
        print(f"FAIL {cat}/{name}: {problems}\n    " + "\n    ".join(err))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
