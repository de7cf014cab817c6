#!/usr/bin/env bash
# `pipe report` (issue 12): generation time and page size for a compare-like run (B1/B2/B3 on
# tiny synthetic faces) and for a synthetic 50-model x 1,000-epoch history, and the time
# headless Chromium takes until the page's script has rendered (performance.now(), written
# into the DOM by the page). Debug build (the machine is shared); medians of 5.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/report
rm -rf "$OUT"
mkdir -p "$OUT"
cargo build --quiet --bin pipe --example report_synth
PIPE="$PWD/target/debug/pipe"
SYNTH="$PWD/target/debug/examples/report_synth"
BROWSER=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
echo "load: $(uptime)"

cat > "$OUT/compare.yaml" <<'YAML'
name: bench_compare
stages:
  faces: {kind: source, format: synthetic, count: 600, height: 24, width: 24}
  hashes: {kind: hash, inputs: {data: faces}}
  groups: {kind: dedup, inputs: {hashes: hashes, data: faces}}
  clean: {kind: filter_conflicts, inputs: {groups: groups, data: faces}}
  split: {kind: split, inputs: {data: faces, selection: clean, groups: groups}}
  train_b1: {kind: train, model: b1, epochs: 6, batch_size: 32, test_every: 2, inputs: {data: faces, split: split}}
  train_b2: {kind: train, model: b2, epochs: 6, batch_size: 32, test_every: 2, inputs: {data: faces, split: split}}
  train_b3: {kind: train, model: b3, epochs: 6, batch_size: 32, test_every: 2, plateau: {monitor: val_loss, patience: 1}, inputs: {data: faces, split: split}}
  evaluate_b1: {kind: evaluate, inputs: {model: train_b1, data: faces, split: split}}
  evaluate_b2: {kind: evaluate, inputs: {model: train_b2, data: faces, split: split}}
  evaluate_b3: {kind: evaluate, threshold: tune, inputs: {model: train_b3, data: faces, split: split}}
  analyze_b3: {kind: analyze, inputs: {data: faces, model: train_b3, split: split}}
YAML
(cd "$OUT" && "$PIPE" run compare.yaml >/dev/null)
"$SYNTH" "$OUT/synth" 50 1000

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # NAME CACHE FILE PAGE
  local name=$1 cache=$2 file=$3 page=$4
  "$PIPE" --cache "$cache" report "$file" -o "$page" >/dev/null  # fails the script on error
  local write
  write=$(for _ in 1 2 3 4 5; do
    s=$(date +%s.%N); "$PIPE" --cache "$cache" report "$file" -o "$page" >/dev/null
    e=$(date +%s.%N); echo "$e - $s" | bc -l; done | median)
  local render
  render=$(for _ in 1 2 3 4 5; do
    "$BROWSER" --headless --disable-gpu --no-sandbox --user-data-dir="$OUT/profile" \
      --dump-dom "file://$page" 2>/dev/null | grep -o 'data-render-ms="[0-9.]*"' | grep -o '[0-9.]*'
    done | median)
  printf '| %s | %.3f s | %.2f MB | %s ms |\n' "$name" "$write" \
    "$(echo "$(stat -c %s "$page") / 1000000" | bc -l)" "$render"
}
echo "| history | pipe report (write) | page size | browser load-to-render |"
echo "|---|---|---|---|"
measure "compare-like (3 models x 6 epochs)" "$OUT/cache" "$OUT/compare.yaml" "$PWD/$OUT/compare.html"
measure "synthetic 50 models x 1,000 epochs" "$OUT/synth/cache" "$OUT/synth/synth.yaml" "$PWD/$OUT/synth.html"
echo "load: $(uptime)"
