#!/usr/bin/env bash
# Issue #4 accuracy parity on real faces: the SMILE crops (13,165 grey 64x64 JPEGs,
# ../shared/data/smile or $SMILE_DIR, never copied into the repository). pipe runs folder source
# → hash → dedup → filter_conflicts → split (seed 2019) → augment → train B3 → evaluate on test
# (last epoch's weights, threshold 0.5); then Keras trains the identical B3 with
# ImageDataGenerator (rescale 1/255, zoom 0.1, rotation 10, horizontal flip, fill nearest),
# Adam at the same lr, batch 124, binary cross-entropy, the same epochs, on exactly pipe's train
# split (pipe's split.json and source pixels.u8/labels.u8), validating on pipe's val split after
# every epoch as pipe does, and evaluates balanced accuracy on pipe's test split. Prints both and the difference (target: pipe within 1 point of Keras).
# Usage: bench/smile_parity.sh [EPOCHS] [LR] [SEED]   (defaults 15, 1e-4, 0: the training seed of
# both, the split seed stays 2019; honours CARGO_TARGET_DIR)
# Writes bench/out/smile/ (git-ignored); pipe's stages stay cached there between runs
# (delete bench/out/smile/cache to retrain).
set -euo pipefail
epochs=${1:-15}
lr=${2:-1e-4}
seed=${3:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
smile=${SMILE_DIR:-$(cd "$root/.." && pwd)/shared/data/smile}
out=$root/bench/out/smile
mkdir -p "$out"
[ -f "$smile/labels.csv" ] || { echo "no SMILE data at $smile (set SMILE_DIR)" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
pipe=${CARGO_TARGET_DIR:-$root/target}/release/pipe
python3 -c "import tensorflow, keras, numpy, scipy" 2>/dev/null || python3 -m pip install --quiet tensorflow-cpu numpy scipy

cd "$out"
cat > smile.yaml <<YAML
name: smile
description: SMILE crops, B3 with augmentation; accuracy parity with Keras (bench/smile_parity.sh).
stages:
  faces: {kind: source, format: folder, dir: $smile/images, labels: $smile/labels.csv,
          height: 64, width: 64, channels: 1}
  hashes: {kind: hash, inputs: {data: faces}}
  groups: {kind: dedup, radius: 0, inputs: {hashes: hashes, data: faces}}
  clean: {kind: filter_conflicts, inputs: {groups: groups, data: faces}}
  split: {kind: split, seed: 2019, inputs: {data: faces, selection: clean, groups: groups}}
  augment: {kind: augment, rotation_range: 10, zoom_range: 0.1, horizontal_flip: true,
            fill_mode: nearest, inputs: {data: faces}}
  train_b3: {kind: train, model: b3, lr: $lr, batch_size: 124, epochs: $epochs, test_every: 0,
             seed: $seed, inputs: {data: faces, split: split, augment: augment}}
  evaluate: {kind: evaluate, on: test, checkpoint: last, threshold: 0.5,
             inputs: {model: train_b3, data: faces, split: split}}
YAML

echo "load before pipe: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
t0=$(date +%s)
"$pipe" run smile.yaml | tee pipe.log
pipe_s=$(( $(date +%s) - t0 ))
obj() { # stage id → its cache object directory
  python3 -c "import json,sys; d=json.load(sys.stdin)['$1']['digest']; print('cache/objects/'+d[:2]+'/'+d)" \
    < <("$pipe" status smile.yaml --json)
}
pipe_bacc=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]+'/report.json'))['metrics']['balanced_accuracy'])" "$(obj evaluate)")

echo "load before Keras: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s)
python3 "$root/bench/smile_keras.py" "$(obj faces)" "$(obj split)" --val --epochs "$epochs" --lr "$lr" \
  --seed "$seed" --out keras.json | tee keras.log
keras_s=$(( $(date +%s) - t0 ))
keras_bacc=$(python3 -c "import json; print(json.load(open('keras.json'))['balanced_accuracy'])")

printf 'SMILE test balanced accuracy (%s epochs, lr %s, seed %s, threshold 0.5, last epoch): pipe %.2f%%, Keras %.2f%%, pipe - Keras = %+.2f points (target >= -1)\n' \
  "$epochs" "$lr" "$seed" "$(echo "100 * $pipe_bacc" | bc -l)" "$(echo "100 * $keras_bacc" | bc -l)" \
  "$(echo "100 * ($pipe_bacc - $keras_bacc)" | bc -l)"
echo "wall: pipe run ${pipe_s} s (0 if cached), Keras script ${keras_s} s; load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
