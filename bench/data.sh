#!/usr/bin/env bash
# Issue #3 benchmark: the data half (source raw → hash → dedup radius 0 → filter_conflicts →
# split) over 116,000 images of 56x56x3 in the challenge's raw layout, cold (fresh cache):
# wall time, peak RSS and per-stage seconds; source+hash+dedup against Python ImageHash 4.3.2
# over the same images from arrays (images/s and ratio, the two in turn in the same run);
# blake3 of the raw file, pipe vs b3sum (GB/s, in turn); dedup at radius 4 over the 116k
# hashes; and agreement of pipe's hashes with ImageHash's for every image.
# Usage: bench/data.sh [REPEATS]   (default 3; needs cargo and python3 with pip)
# Honours CARGO_TARGET_DIR. Everything it writes goes under bench/out/data/ (git-ignored).
set -euo pipefail
reps=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bench/out/data
mkdir -p "$out"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
pipe=${CARGO_TARGET_DIR:-$root/target}/release/pipe
python3 -m pip install --quiet numpy pillow ImageHash==4.3.2 2>/dev/null
if [ ! -x /usr/bin/time ]; then apt-get install -y -qq time >/dev/null; fi

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# seconds of stage $2 in the newest run record of cache $1 (more digits than the "in N s" line)
stage_s() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys
d = os.path.join(sys.argv[1], "runs")
rec = json.load(open(os.path.join(d, sorted(os.listdir(d))[-1])))
print(rec["stages"][sys.argv[2]]["seconds"])
PY
}
# cache object directory of stage $2 of pipeline file $1 (run from the file's directory)
object_of() {
  "$pipe" status "$1" --json \
    | python3 -c "import json,sys; d=json.load(sys.stdin)['$2']['digest']; print('cache/objects/'+d[:2]+'/'+d)"
}

# ---- data: 116,000 images from pipe's synthetic source ----
cd "$out"
if [ ! -f db_train.raw ] || [ ! -f label_train.txt ]; then
  mkdir -p gen
  cat > gen/gen.yaml <<'YAML'
name: gen116k
stages:
  faces: {kind: source, format: synthetic, count: 115700, height: 56, width: 56, channels: 3,
          seed: 2019, exact_duplicates: 150, near_duplicates: 120, conflicting_duplicates: 30}
YAML
  (cd gen && "$pipe" run gen.yaml > gen.log)
  obj=gen/$(cd gen && object_of gen.yaml faces)
  cp "$obj/pixels.u8" db_train.raw
  python3 -c "import sys; sys.stdout.write(''.join(f'{b}\n' for b in open('$obj/labels.u8','rb').read()))" \
    > label_train.txt
  rm -rf gen/cache
fi
raw_bytes=$(stat -c %s db_train.raw)
n=$(wc -l < label_train.txt)
echo "data: $n images 56x56x3, db_train.raw $raw_bytes bytes"

cat > data.yaml <<'YAML'
name: data116k
stages:
  train_raw: {kind: source, format: raw, images: db_train.raw, labels: label_train.txt,
              height: 56, width: 56, channels: 3}
  hashes: {kind: hash, algorithm: dhash, hash_size: 8, inputs: {data: train_raw}}
  groups: {kind: dedup, radius: 0, inputs: {hashes: hashes, data: train_raw}}
  clean: {kind: filter_conflicts, policy: drop_all, inputs: {groups: groups, data: train_raw}}
  split: {kind: split, train: 0.595, val: 0.105, test: 0.30, seed: 2019,
          inputs: {data: train_raw, selection: clean, groups: groups}}
YAML

# ---- pipe: whole data half, cold (fresh cache; the OS page cache holds the raw file) ----
: > walls.txt; : > rss.txt
for i in $(seq "$reps"); do
  rm -rf cache
  /usr/bin/time -v "$pipe" run data.yaml > run.log 2> time.log
  grep -E 'Elapsed \(wall' time.log | awk '{print $NF}' \
    | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }' >> walls.txt
  grep 'Maximum resident' time.log | awk '{print $NF}' >> rss.txt
  echo "  repeat $i: $(tail -1 walls.txt) s, peak RSS $(tail -1 rss.txt) KiB  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
done
cat run.log
wall=$(median < walls.txt)
rss_kib=$(median < rss.txt)
rss_ratio=$(echo "$rss_kib * 1024 / $raw_bytes" | bc -l)
for s in train_raw hashes groups clean split; do
  printf '  stage %-9s %.3f s\n' "$s" "$(stage_s cache "$s")"
done
printf 'whole data half, cold: %.2f s wall (median of %d; target < 5 s), peak RSS %.0f MiB = %.2fx the raw file (target < 2x)\n' \
  "$wall" "$reps" "$(echo "$rss_kib / 1024" | bc -l)" "$rss_ratio"
hash_obj=$(object_of data.yaml hashes)

# ---- source + hash + dedup: pipe vs Python imagehash, in turn (pipe, Python, pipe, ...) ----
: > sub.txt; : > pysub.txt
for i in $(seq "$reps"); do
  rm -rf cache
  t0=$(date +%s.%N); "$pipe" run data.yaml --until groups > until.log; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l >> sub.txt
  py=$(python3 "$root/bench/data_imagehash.py" db_train.raw --hashes-out py_hashes.txt | grep '^PY_RESULT' | cut -d' ' -f2-)
  python3 -c "import json,sys; print(json.loads(sys.argv[1])['seconds'])" "$py" >> pysub.txt
  echo "  repeat $i: pipe $(tail -1 sub.txt) s, Python $(tail -1 pysub.txt) s  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
done
# cloned on btrfs/XFS/bcachefs, copied elsewhere (README, design notes)
printf '  stage train_raw %.3f s (filesystem: %s)\n' "$(stage_s cache train_raw)" "$(stat -f -c %T .)"
pipe_sub=$(median < sub.txt)
pipe_ips=$(echo "$n / $pipe_sub" | bc -l)
py_s=$(median < pysub.txt)
py_ips=$(echo "$n / $py_s" | bc -l)
printf 'source+hash+dedup: pipe %.3f s = %.0f images/s (median of %d, wall of `pipe run --until groups`, fresh cache); Python imagehash %.2f s = %.0f images/s (median of %d, its own clock); pipe is %.1fx faster (target >= 30x)\n' \
  "$pipe_sub" "$pipe_ips" "$reps" "$py_s" "$py_ips" "$reps" "$(echo "$pipe_ips / $py_ips" | bc -l)"
echo "  python detail (last): $py"

# ---- hashing: pipe's blake3 of the raw file vs b3sum, in turn ----
# `pipe status` on an empty cache digests db_train.raw for the source's key (nothing else is
# read); b3sum (`cargo install b3sum --locked`) hashes the same file, mapped, on all cores.
if command -v b3sum > /dev/null; then
  : > ph.txt; : > bh.txt
  for i in $(seq "$reps"); do
    rm -rf hcache
    t0=$(date +%s.%N); "$pipe" status data.yaml --cache hcache > /dev/null; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l >> ph.txt
    t0=$(date +%s.%N); b3sum db_train.raw > /dev/null; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l >> bh.txt
  done
  rm -rf hcache
  ph=$(median < ph.txt); bh=$(median < bh.txt)
  printf 'blake3 of db_train.raw (%d bytes): pipe status (cold key) %.3f s = %.2f GB/s, b3sum %.3f s = %.2f GB/s, pipe/b3sum %.2fx (medians of %d, load %s)\n' \
    "$raw_bytes" "$ph" "$(echo "$raw_bytes / $ph / 1000000000" | bc -l)" "$bh" "$(echo "$raw_bytes / $bh / 1000000000" | bc -l)" \
    "$(echo "$bh / $ph" | bc -l)" "$reps" "$(cut -d' ' -f1-3 /proc/loadavg)"
else
  echo "(b3sum not installed: cargo install b3sum --locked)"
fi

# ---- dedup at radius 4 over the 116k hashes (source and hash cached) ----
: > r4.txt
for i in $(seq "$reps"); do
  "$pipe" run data.yaml --set stages.groups.radius=4 --force groups --until groups > r4.log
  stage_s cache groups >> r4.txt
done
grep -E '^  ran +groups' r4.log
printf 'dedup radius 4 over %d hashes: %.3f s (median of %d; target < 1 s)\n' "$n" "$(median < r4.txt)" "$reps"

# ---- hash agreement ----
python3 - "$hash_obj/hashes.csv" py_hashes.txt <<'PY'
import csv, sys
pipe = [r["hash"] for r in csv.DictReader(open(sys.argv[1]))]
py = open(sys.argv[2]).read().split()
assert len(pipe) == len(py), (len(pipe), len(py))
same = sum(a == b for a, b in zip(pipe, py))
print(f"hash agreement: {same} of {len(py)} identical ({100 * same / len(py):.3f}%)")
PY
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
