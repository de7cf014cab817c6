#!/usr/bin/env bash
# Issue 23 item 6, "does it pay?": on the SMILE crops (13,165 grey 64x64 JPEGs, ../shared/data/smile
# or $SMILE_DIR, read in place), the same budget of B3 trials searched three ways: random search,
# TPE, TPE with ASHA pruning; then the report's hand-tuned B3 (lr 1e-4, batch 124, dropout 0.3)
# trained for the same epochs as the baseline. Prints, per search, the best trial by validation
# balanced accuracy, its test balanced accuracy and the training epochs the search spent (a trial
# found in the cache counts its epochs all the same: a search on its own would have trained them).
# Usage: bench/search_smile.sh [TRIALS] [EPOCHS] [SEED] [STARTUP] [SIZE]   (defaults 8, 6, 0, 3,
# 32: TPE's first STARTUP trials are random draws, the same as random search's first ones; the
# faces are read at SIZE x SIZE, 64 being the crops' own size)
# Honours PIPE (the binary; default: build and use target/release/pipe). Writes bench/out/search/
# (git-ignored); stages stay cached there between runs (delete its cache/ to retrain).
set -euo pipefail
trials=${1:-8}
epochs=${2:-6}
seed=${3:-0}
startup=${4:-3}
size=${5:-32}
root=$(cd "$(dirname "$0")/.." && pwd)
smile=${SMILE_DIR:-$(cd "$root/.." && pwd)/shared/data/smile}
out=$root/bench/out/search
mkdir -p "$out"
[ -f "$smile/labels.csv" ] || { echo "no SMILE data at $smile (set SMILE_DIR)" >&2; exit 2; }
if [ -z "${PIPE:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  PIPE=${CARGO_TARGET_DIR:-$root/target}/release/pipe
fi

cd "$out"
cat > smile.yaml <<YAML
name: smile_search
description: SMILE crops, B3 with augmentation; the searched trials of bench/search_smile.sh.
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
  val: {kind: evaluate, on: val, threshold: 0.5, inputs: {model: train, data: faces, split: split}}
  test: {kind: evaluate, on: test, threshold: 0.5, inputs: {model: train, data: faces, split: split}}
YAML

space=(--search 'stages.train.lr=3e-5..3e-3:log' --search 'stages.train.dropout=0.0..0.6'
       --search 'stages.train.batch_size=32|64|124')
# -j 1: TPE proposes each trial from all the trials before it, ASHA decides reproducibly.
common=(-j 1 --trials "$trials" --seed "$seed" --objective val.balanced_accuracy)
load() { cut -d' ' -f1-3 /proc/loadavg; }
search() { # label, cache, extra flags…
  local label=$1 cache=$2
  shift 2
  echo "== $label: $(date -u +%H:%M:%S) UTC, load $(load)"
  local t0
  t0=$(date +%s)
  "$PIPE" --cache "$cache" run smile.yaml "${space[@]}" "${common[@]}" "$@" 2>&1 | tee "$label.log" |
    grep -E '^(sweep|best|  variant|pruned)' || true
  echo "== $label: $(( $(date +%s) - t0 )) s, load $(load)"
}
# Random search and TPE share a cache: TPE's startup trials are random search's first ones,
# trained once (the same bytes either way). TPE+ASHA gets its own: a cached trial is complete,
# never pruned, so sharing would hide what pruning saves.
search random cache --sampler random
search tpe cache --sampler "tpe:startup=$startup"
search tpe_asha cache_asha --sampler "tpe:startup=$startup" --prune asha
echo "== baseline (hand-tuned B3, $epochs epochs): $(date -u +%H:%M:%S) UTC, load $(load)"
"$PIPE" run smile.yaml > baseline.log 2>&1
echo "== done $(date -u +%H:%M:%S) UTC, load $(load)"

# Per search: best trial by validation balanced accuracy, its test balanced accuracy, epochs spent
# (each search's own trials: a rerun's records replace the earlier ones of the same variant).
python3 - "$PIPE" <<'PY'
import json, glob, re, sys
rows = {}
for path in sorted(glob.glob("cache*/runs/*.json")):
    rec = json.load(open(path))
    rows.setdefault(rec.get("sweep"), []).append(rec)
def metric(rec, stage, name):
    s = rec["stages"].get(stage) or {}
    return ((s.get("report") or {}).get("metrics") or {}).get(name)
for label in ["random", "tpe", "tpe_asha"]:
    sweep = re.search(r"^sweep (\w+):", open(f"{label}.log").read(), re.M).group(1)
    recs = {json.dumps(r["variant"], sort_keys=True): r for r in rows.get(sweep, [])}
    best, spent, pruned = None, 0, 0
    for r in recs.values():
        t = r["stages"].get("train") or {}
        m = (t.get("report") or {}).get("metrics") or {}
        if t.get("outcome") == "pruned":
            spent += int(m.get("pruned_epoch", 0))
            pruned += 1
            continue
        spent += int(m.get("epochs", 0))
        v, te = metric(r, "val", "balanced_accuracy"), metric(r, "test", "balanced_accuracy")
        if v is not None and (best is None or v > best[0]):
            best = (v, te, r["variant"])
    print(f"{label}: {len(recs)} trials ({pruned} pruned), {spent} training epochs; best val bacc "
          f"{best[0]:.4f}, its test bacc {best[1]:.4f}: {best[2]}")
base = [r for r in rows.get(None, []) if r["stages"].get("test")][-1]
print(f"baseline B3: val bacc {metric(base, 'val', 'balanced_accuracy'):.4f}, "
      f"test bacc {metric(base, 'test', 'balanced_accuracy'):.4f}, "
      f"{int(metric(base, 'train', 'epochs'))} epochs")
PY
