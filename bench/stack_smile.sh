#!/usr/bin/env bash
# Issue 23 item 6, `stack` vs the plain B3: on the SMILE crops (../shared/data/smile or
# $SMILE_DIR, read in place) the report's hand-tuned B3 (the baseline of bench/search_smile.sh:
# same data stages, same split, same training) is scored on the test split at a tuned threshold,
# and so are a random forest and gradient-boosted trees fitted on its last hidden layer's
# activations (`stack`) and the B3 + forest ensemble. Prints each one's test balanced accuracy,
# accuracy and ROC AUC, and the stack stages' seconds.
# Usage: bench/stack_smile.sh [EPOCHS] [SIZE]   (defaults 6 and 32, bench/search_smile.sh's)
# Honours PIPE (the binary; default: build and use target/release/pipe) and CACHE (default
# bench/out/stack/cache; point it at bench/out/search/cache to reuse the search's trained B3).
set -euo pipefail
epochs=${1:-6}
size=${2:-32}
root=$(cd "$(dirname "$0")/.." && pwd)
smile=${SMILE_DIR:-$(cd "$root/.." && pwd)/shared/data/smile}
out=$root/bench/out/stack
cache=${CACHE:-$out/cache}
mkdir -p "$out"
[ -f "$smile/labels.csv" ] || { echo "no SMILE data at $smile (set SMILE_DIR)" >&2; exit 2; }
if [ -z "${PIPE:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  PIPE=${CARGO_TARGET_DIR:-$root/target}/release/pipe
fi

cd "$out"
# The data stages and `train` are bench/search_smile.sh's baseline, byte for byte in their
# configs, so their cache keys are the same.
cat > smile_stack.yaml <<YAML
name: smile_stack
description: SMILE crops, the hand-tuned B3 and classical classifiers on its features.
stages:
  faces: {kind: source, format: folder, dir: $smile/images, labels: $smile/labels.csv,
          height: $size, width: $size, channels: 1}
  hashes: {kind: hash, inputs: {data: faces}}
  groups: {kind: dedup, radius: 0, inputs: {hashes: hashes, data: faces}}
  clean: {kind: filter_conflicts, inputs: {groups: groups, data: faces}}
  split: {kind: split, seed: 2019, inputs: {data: faces, selection: clean, groups: groups}}
  augment: {kind: augment, rotation_range: 10, zoom_range: 0.1, horizontal_flip: true,
            fill_mode: nearest, inputs: {data: faces}}
  train: {kind: train, model: b3, lr: 1.0e-4, batch_size: 124, dropout: 0.3, epochs: $epochs,
          test_every: 0, seed: 0, inputs: {data: faces, split: split, augment: augment}}
  b3: {kind: evaluate, on: test, threshold: tune, inputs: {model: train, data: faces, split: split}}
  stack_rf: {kind: stack, classifier: {kind: random_forest, trees: 300}, threshold: tune,
             on: test, inputs: {model: train, data: faces, split: split}}
  stack_gb: {kind: stack, classifier: {kind: gradient_boosting, rounds: 200, max_depth: 3,
             learning_rate: 0.1}, threshold: tune, on: test,
             inputs: {model: train, data: faces, split: split}}
  b3_rf: {kind: ensemble, on: test, threshold: 0.5,
          inputs: {data: faces, split: split, b3: train, rf: stack_rf}}
YAML
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "== $(date -u +%H:%M:%S) UTC, load $(load)"
"$PIPE" --cache "$cache" run smile_stack.yaml 2>&1 | tee run.log | grep -E '^(  )?(ran|cached|failed)' || true
echo "== $(date -u +%H:%M:%S) UTC, load $(load)"
python3 - "$cache" <<'PY'
import json, glob, os, sys
recs = sorted(glob.glob(os.path.join(sys.argv[1], "runs", "*.json")))
rec = [json.load(open(p)) for p in recs]
rec = [r for r in rec if r.get("pipeline") == "smile_stack"][-1]
print("| model (test split) | balanced accuracy | accuracy | ROC AUC | stage s |")
print("|---|---|---|---|---|")
for sid in ["b3", "stack_rf", "stack_gb", "b3_rf"]:
    s = rec["stages"][sid]
    m = (s.get("report") or {}).get("metrics") or {}
    f = lambda k: f"{m[k]:.4f}" if m.get(k) is not None else "–"
    print(f"| {sid} | {f('balanced_accuracy')} | {f('accuracy')} | {f('roc_auc')} | {s.get('seconds', 0):.1f} |")
PY
