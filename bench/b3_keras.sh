#!/usr/bin/env bash
# Issue #4 benchmark: B3 (56x56x3, batch 124, Adam 1e-4) training and inference images/s on the
# CPU, pipe (burn flex backend, `cargo bench --bench train_speed -- b3`, benches/train_speed.rs) versus the
# identical Keras model (bench/b3_keras.py), measured in the same run; prints pipe/Keras ratios.
# Usage: bench/b3_keras.sh   (needs cargo and python3 with pip; installs tensorflow-cpu)
# Honours CARGO_TARGET_DIR. Logs go to bench/out/b3/ (git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bench/out/b3
mkdir -p "$out"
python3 -c "import tensorflow, keras" 2>/dev/null || python3 -m pip install --quiet tensorflow-cpu numpy
cargo bench --quiet --manifest-path "$root/Cargo.toml" --bench train_speed --no-run 2>/dev/null

echo "load before pipe: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
cargo bench --quiet --manifest-path "$root/Cargo.toml" --bench train_speed -- b3 \
  > "$out/pipe.log" 2>&1
grep -E 'B3 |infer batch' "$out/pipe.log"
pipe_train=$(sed -nE 's/^B3 train: ([0-9.]+) img\/s.*/\1/p' "$out/pipe.log")
pipe_pred=$(sed -nE 's/^B3 predict: ([0-9.]+) img\/s.*/\1/p' "$out/pipe.log")
pipe_1024=$(sed -nE 's/^ *infer batch 1024: ([0-9.]+) img\/s.*/\1/p' "$out/pipe.log")

echo "load before Keras: $(cut -d' ' -f1-3 /proc/loadavg)"
(cd "$out" && python3 "$root/bench/b3_keras.py") > "$out/keras.log" 2>&1
grep -E 'repeat|params' "$out/keras.log"
res=$(grep '^RESULT' "$out/keras.log" | cut -d' ' -f2-)
k() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$1'])" "$res"; }
k_fit=$(k train_median); k_pred=$(k predict_median); k_pob=$(k infer_median)
echo "Keras $(k keras) (tf $(k tf), backend $(k backend))"

r() { echo "$1 / $2" | bc -l; }
printf 'training:  pipe %.1f img/s, Keras model.fit %.1f img/s -> pipe/Keras %.2fx (target >= 1.0x)\n' \
  "$pipe_train" "$k_fit" "$(r "$pipe_train" "$k_fit")"
printf 'inference: pipe predict %.1f img/s, Keras model.predict %.1f img/s (both batch 256, 1488 images) -> pipe/Keras %.2fx (target >= 1.0x)\n' \
  "$pipe_pred" "$k_pred" "$(r "$pipe_pred" "$k_pred")"
printf 'inference, batch 1024: pipe %.1f img/s, Keras predict_on_batch %.1f img/s -> pipe/Keras %.2fx\n' \
  "$pipe_1024" "$k_pob" "$(r "$pipe_1024" "$k_pob")"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
