#!/usr/bin/env bash
# Issue #24 benchmark: B3 (56x56x3, batch 124, Adam 1e-4, no augmentation) training and
# inference images/s on the CPU, pipe vs Keras vs PyTorch in the same run, each process under
# `/usr/bin/time -v` for its peak RSS. The three run in turn, ROUNDS times (pipe, Keras,
# PyTorch, pipe, ...), so a change of the machine's load hits all three alike; medians of the
# rounds, and the load average before each run, are printed.
#   pipe:    `cargo bench --bench train_speed -- b3` (benches/train_speed.rs: 2 epochs over
#            BENCH_B3_BATCHES batches, first step included; predict over 1,488 images at batch
#            256; raw inference at batch 1024), the bench binary run directly.
#   Keras:   bench/b3_keras.py, `fit` over the same N_BATCHES batches (after a compile step).
#   PyTorch: bench/b3_torch_cpu.py, the same model and work, torch's default threads.
# Usage: bench/b3_anchors.sh   (env: BATCHES=10 ROUNDS=2 VENV=… BENCH_BIN=…; needs cargo and
# python3 with venv)
# Installs torch (PyPI) and tensorflow-cpu into a venv under bench/out/venv, never into the repo
# or the system. Honours CARGO_TARGET_DIR. Logs go to bench/out/anchors/ (git-ignored).
set -euo pipefail
batches=${BATCHES:-10}
rounds=${ROUNDS:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bench/out/anchors
venv=${VENV:-$root/bench/out/venv}
mkdir -p "$out"
if [ ! -x /usr/bin/time ]; then apt-get install -y -qq time >/dev/null; fi
if ! "$venv/bin/python" -c "import torch, tensorflow, keras" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch tensorflow-cpu numpy
fi
py=$venv/bin/python
# BENCH_BIN: a train_speed binary already built (e.g. while the machine is too busy to build)
bin=${BENCH_BIN:-$(cargo bench --manifest-path "$root/Cargo.toml" --bench train_speed --no-run \
  --message-format=json 2>/dev/null \
  | "$py" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "train_speed" and m.get("executable"):
        print(m["executable"])')}

load() { cut -d' ' -f1-3 /proc/loadavg; }
rss_mib() { awk '/Maximum resident/ {printf "%.0f", $NF / 1024}' "$1"; }
res() { grep '^RESULT' "$1" | cut -d' ' -f2- | "$py" -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: > "$out/rows.txt"
for r in $(seq "$rounds"); do
  l=$(load)
  (cd "$root" && BENCH_B3_BATCHES=$batches /usr/bin/time -v "$bin" --bench b3) \
    > "$out/pipe.$r.log" 2> "$out/pipe.$r.time"
  p_train=$(sed -nE 's/^B3 train: ([0-9.]+) img\/s.*/\1/p' "$out/pipe.$r.log")
  p_pred=$(sed -nE 's/^B3 predict: ([0-9.]+) img\/s.*/\1/p' "$out/pipe.$r.log")
  p_1024=$(sed -nE 's/^ *infer batch 1024: ([0-9.]+) img\/s.*/\1/p' "$out/pipe.$r.log")
  echo "pipe $r $p_train $p_pred $p_1024 $(rss_mib "$out/pipe.$r.time") load $l" | tee -a "$out/rows.txt"

  l=$(load)
  (cd "$out" && N_BATCHES=$batches /usr/bin/time -v "$py" "$root/bench/b3_keras.py") \
    > "$out/keras.$r.log" 2> "$out/keras.$r.time"
  echo "keras $r $(res "$out/keras.$r.log" train_median) $(res "$out/keras.$r.log" predict_median)" \
    "$(res "$out/keras.$r.log" infer_median) $(rss_mib "$out/keras.$r.time") load $l" | tee -a "$out/rows.txt"

  l=$(load)
  (cd "$out" && N_BATCHES=$batches /usr/bin/time -v "$py" "$root/bench/b3_torch_cpu.py") \
    > "$out/torch.$r.log" 2> "$out/torch.$r.time"
  echo "torch $r $(res "$out/torch.$r.log" train_median) $(res "$out/torch.$r.log" predict_median)" \
    "$(res "$out/torch.$r.log" infer_median) $(rss_mib "$out/torch.$r.time") load $l" | tee -a "$out/rows.txt"
done
grep -m1 '^torch ' "$out/torch.1.log"
grep -m1 '"tf"' "$out/keras.1.log" | sed -E 's/.*"tf": "([^"]+)".*"keras": "([^"]+)".*/tensorflow \1, keras \2/' || true

col() { awk -v w="$1" -v c="$2" '$1 == w {print $c}' "$out/rows.txt" | median; }
printf '%-8s %12s %14s %14s %10s   (medians of %d rounds, %d batches of 124)\n' \
  "" "train img/s" "predict img/s" "batch-1024" "peak MiB" "$rounds" "$batches"
for w in pipe keras torch; do
  printf '%-8s %12.1f %14.1f %14.1f %10.0f\n' "$w" "$(col $w 3)" "$(col $w 4)" "$(col $w 5)" "$(col $w 6)"
done
ratio() { echo "$(col pipe "$1") / $(col "$2" "$1")" | bc -l; }
printf 'pipe/Keras:   training %.2fx, predict %.2fx, batch 1024 %.2fx, peak RSS %.2fx\n' \
  "$(ratio 3 keras)" "$(ratio 4 keras)" "$(ratio 5 keras)" "$(ratio 6 keras)"
printf 'pipe/PyTorch: training %.2fx, predict %.2fx, batch 1024 %.2fx, peak RSS %.2fx\n' \
  "$(ratio 3 torch)" "$(ratio 4 torch)" "$(ratio 5 torch)" "$(ratio 6 torch)"
echo "load at end: $(load); $(nproc) cores"
