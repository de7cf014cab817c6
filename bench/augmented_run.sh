#!/usr/bin/env bash
# Issue #9, last row: a whole training run as users run it, pipe against the same work in Keras,
# same run, medians of REPEATS. Real faces at 56x56x3: the SMILE crops (../shared/data/smile or
# $SMILE_DIR, read in place; the folder source resizes them to 56x56 and repeats the grey channel
# into RGB). pipe: folder source → hash → dedup → filter_conflicts → split (seed 2019) → augment
# (rotation 10, zoom 0.1, horizontal flip, fill nearest) → train B3 (batch 124, Adam 1e-4, a
# validation pass over the val split after every epoch). Keras (bench/smile_keras.py --val): the
# identical B3 on exactly pipe's train split with ImageDataGenerator's same augmentation and
# `validation_data` = pipe's val split, batch 124.
# Timed: pipe's `train_b3` stage (the `ran train_b3 in X s` line; the data stages are cached after
# the first repeat, `--force train_b3` retrains) against Keras' `model.fit` (augmentation,
# batches, validation included; TensorFlow's import and the test predictions excluded).
# Usage: bench/augmented_run.sh [REPEATS] [EPOCHS]   (defaults 3, 5). Writes bench/out/augrun/.
set -euo pipefail
reps=${1:-3}
epochs=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
smile=${SMILE_DIR:-$(cd "$root/.." && pwd)/shared/data/smile}
out=$root/bench/out/augrun
mkdir -p "$out"
[ -f "$smile/labels.csv" ] || { echo "no SMILE data at $smile (set SMILE_DIR)" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
pipe=${CARGO_TARGET_DIR:-$root/target}/release/pipe
python3 -c "import tensorflow, keras, numpy, scipy" 2>/dev/null || python3 -m pip install --quiet tensorflow-cpu numpy scipy
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cd "$out"
cat > augrun.yaml <<YAML
name: augrun
description: SMILE crops at 56x56x3, B3 with augmentation and validation (bench/augmented_run.sh).
stages:
  faces: {kind: source, format: folder, dir: $smile/images, labels: $smile/labels.csv,
          height: 56, width: 56, channels: 3}
  hashes: {kind: hash, inputs: {data: faces}}
  groups: {kind: dedup, radius: 0, inputs: {hashes: hashes, data: faces}}
  clean: {kind: filter_conflicts, inputs: {groups: groups, data: faces}}
  split: {kind: split, seed: 2019, inputs: {data: faces, selection: clean, groups: groups}}
  augment: {kind: augment, rotation_range: 10, zoom_range: 0.1, horizontal_flip: true,
            fill_mode: nearest, inputs: {data: faces}}
  train_b3: {kind: train, model: b3, lr: 1e-4, batch_size: 124, epochs: $epochs, test_every: 0,
             seed: 0, inputs: {data: faces, split: split, augment: augment}}
YAML
"$pipe" run augrun.yaml --until split > data.log
obj() { # stage id → its cache object directory
  python3 -c "import json,sys; d=json.load(sys.stdin)['$1']['digest']; print('cache/objects/'+d[:2]+'/'+d)" \
    < <("$pipe" status augrun.yaml --json)
}
faces=$(obj faces) split=$(obj split)
python3 - "$split" <<'PY'
import json, sys
s = json.load(open(sys.argv[1] + "/split.json"))
print(f"split: train {len(s['train'])}, val {len(s['val'])}, test {len(s['test'])}")
PY

echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $epochs epochs, $reps repeats"
pipe_s=(); keras_s=()
for r in $(seq "$reps"); do
  echo "repeat $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$pipe" run augrun.yaml --force train_b3 > "pipe.$r.log"
  s=$(sed -n 's/.*ran  *train_b3  *in \([0-9.]*\) s.*/\1/p' "pipe.$r.log")
  [ -n "$s" ] || { echo "no train_b3 time in pipe.$r.log" >&2; cat "pipe.$r.log" >&2; exit 1; }
  pipe_s+=("$s")
  python3 "$root/bench/smile_keras.py" "$faces" "$split" --val --epochs "$epochs" --lr 1e-4 \
    --seed 0 --out "keras.$r.json" > "keras.$r.log"
  keras_s+=("$(python3 -c "import json; print(round(json.load(open('keras.$r.json'))['train_seconds'], 1))")")
  echo "  pipe train_b3 ${pipe_s[-1]} s, Keras fit ${keras_s[-1]} s"
done
mp=$(printf '%s\n' "${pipe_s[@]}" | median); mk=$(printf '%s\n' "${keras_s[@]}" | median)
echo "whole augmented training run, $epochs epochs with validation: pipe median ${mp} s (${pipe_s[*]}), Keras median ${mk} s (${keras_s[*]})"
echo "speed ratio pipe / Keras (Keras seconds / pipe seconds): $(echo "scale=2; $mk / $mp" | bc)x (target >= 1.0)"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
