#!/usr/bin/env bash
# Issue #2 benchmark: no-op rerun of a folder-source pipeline (source → hash → dedup →
# filter_conflicts → split) over 20,000 PNG files, pipe versus `dvc repro` on an equivalent
# dvc.yaml over the same files, in one run; then pipe's no-op over 116,000 files.
# Usage: bench/noop.sh            (needs python3 with pip; installs pillow, numpy, dvc)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bench/out/noop
mkdir -p "$out"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" 2>/dev/null || cargo build --release --manifest-path "$root/Cargo.toml"
pipe=$root/target/release/pipe
python3 -m pip install --quiet pillow numpy dvc >/dev/null

write_pipeline() { # dir
cat > "$1/noop.yaml" <<YAML
name: noop
stages:
  src: {kind: source, format: folder, dir: imgs, labels: labels.csv, height: 56, width: 56}
  hashes: {kind: hash, inputs: {data: src}}
  groups: {kind: dedup, inputs: {hashes: hashes, data: src}}
  clean: {kind: filter_conflicts, inputs: {groups: groups, data: src}}
  split: {kind: split, inputs: {data: src, selection: clean, groups: groups}}
YAML
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_cmd() { # repeats cmd...
  local n=$1; shift
  for _ in $(seq "$n"); do
    local t0=$(date +%s.%N); "$@" >/dev/null 2>&1; local t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}

# ---- 20,000 files: pipe vs dvc ----
n_small=${N_SMALL:-20000}
d=$out/n$n_small
if [ ! -f "$d/labels.csv" ]; then python3 "$root/bench/make_folder.py" "$d" "$n_small"; fi
write_pipeline "$d"
cd "$d"
rm -rf cache
"$pipe" run noop.yaml >/dev/null
pipe_s=$(time_cmd 5 "$pipe" run noop.yaml)

# dvc: the same five stages, each running pipe up to that stage and recording its digest.
rm -rf .dvc .dvcignore dvc.yaml dvc.lock outs
git init -q . 2>/dev/null || true
dvc init -q --subdir -f
dvc config core.analytics false
mkdir -p outs
cat > dvc.yaml <<YAML
stages:
  src:
    cmd: $pipe run noop.yaml --until src > outs/src.txt
    deps: [imgs, labels.csv]
    outs: [outs/src.txt]
  hashes:
    cmd: $pipe run noop.yaml --until hashes > outs/hashes.txt
    deps: [outs/src.txt]
    outs: [outs/hashes.txt]
  groups:
    cmd: $pipe run noop.yaml --until groups > outs/groups.txt
    deps: [outs/hashes.txt]
    outs: [outs/groups.txt]
  clean:
    cmd: $pipe run noop.yaml --until clean > outs/clean.txt
    deps: [outs/groups.txt]
    outs: [outs/clean.txt]
  split:
    cmd: $pipe run noop.yaml --until split > outs/split.txt
    deps: [outs/clean.txt]
    outs: [outs/split.txt]
YAML
dvc repro -q >/dev/null
dvc_s=$(time_cmd 3 dvc repro -q)
printf "no-op rerun, $n_small files: pipe %.3f s, dvc repro %.3f s, pipe is %.1fx faster\n" \
  "$pipe_s" "$dvc_s" "$(echo "$dvc_s / $pipe_s" | bc -l)"

# ---- 116,000 files: pipe only ----
n_big=${N_BIG:-116000}
d=$out/n$n_big
if [ ! -f "$d/labels.csv" ]; then python3 "$root/bench/make_folder.py" "$d" "$n_big"; fi
write_pipeline "$d"
cd "$d"
rm -rf cache
cold=$( { /usr/bin/time -f '%e %M' "$pipe" run noop.yaml >/dev/null; } 2>&1 | tail -1)
big_s=$(time_cmd 5 "$pipe" run noop.yaml)
printf "first run, $n_big files: %s s wall, %s KiB peak RSS\n" ${cold}
printf "no-op rerun, $n_big files: pipe %.3f s (target < 0.5 s)\n" "$big_s"
