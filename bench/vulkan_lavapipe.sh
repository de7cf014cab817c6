#!/usr/bin/env bash
# Issue 9: verifies pipe's Vulkan path without a GPU, on Mesa's software Vulkan driver
# (lavapipe, Debian `mesa-vulkan-drivers`): builds `pipe --features vulkan` if needed (a debug
# build with the dev profile, dependencies optimised; over an hour on 2 shared cores, hence kept
# out of CI), then trains B1 on 600 synthetic 32x32 faces (label: light hair) for 4 epochs with
# `--device vulkan` and checks that the training loss falls (last epoch < 0.9 x first).
# Usage: bench/vulkan_lavapipe.sh
#   PIPE=path      use this binary instead of building (DEVICE=cpu runs the same check on the CPU)
#   CUBECL_AUTOTUNE_LEVEL=minimal|balanced|extensive|full   cubecl's autotune intensity
#   CUBECL_AUTOTUNE_CACHE=0   do not persist autotune results (they go to <cache>/cubecl/)
# Honours CARGO_TARGET_DIR (default target/vulkan, so the build never blocks the CPU build's
# target dir). Writes under bench/out/lavapipe/ (git-ignored). Exit 0 = the loss fell.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bench/out/lavapipe
device=${DEVICE:-vulkan}
pipe=${PIPE:-}
if [ -z "$pipe" ]; then
  target=${CARGO_TARGET_DIR:-$root/target/vulkan}
  start=$SECONDS
  CARGO_TARGET_DIR=$target nice -n 19 cargo build --features vulkan --manifest-path "$root/Cargo.toml"
  echo "build: $((SECONDS - start)) s"
  pipe=$target/debug/pipe
fi
pipe=$(cd "$(dirname "$pipe")" && pwd)/$(basename "$pipe")
if [ "$device" = vulkan ]; then
  # Mesa 22 names the ICD lvp_icd.x86_64.json, Mesa 25 (bookworm-backports) lvp_icd.json
  lavapipe_icd() { ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -n 1; }
  if [ -z "$(lavapipe_icd)" ]; then
    apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
  # Only lavapipe, whatever else is installed.
  export VK_DRIVER_FILES=$(lavapipe_icd)
  echo "mesa: $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null || echo '?')"
fi
rm -rf "$out"
mkdir -p "$out"
cd "$out"
cat > lavapipe.yaml <<'YAML'
name: lavapipe
stages:
  faces: {kind: source, format: synthetic, count: 600, height: 32, width: 32, channels: 3,
          seed: 3, rule: light_hair, exact_duplicates: 0, near_duplicates: 0,
          conflicting_duplicates: 0}
  split: {kind: split, train: 0.8, val: 0.2, test: 0.0, seed: 3, inputs: {data: faces}}
  train: {kind: train, model: b1, lr: 1.0e-3, epochs: 4, batch_size: 32, test_every: 0, seed: 3,
          inputs: {data: faces, split: split}}
YAML
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); device $device"
start=$SECONDS
set +e
"$pipe" run lavapipe.yaml --device "$device" > run.log 2>&1
rc=$?
set -e
cat run.log
echo "pipe run: exit $rc after $((SECONDS - start)) s"
if [ $rc -ne 0 ]; then
  [ $rc -ge 128 ] && echo "killed by signal $((rc - 128))"
  exit 1
fi
curve=$(ls cache/objects/*/*/curve.csv)
python3 - "$curve" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
loss = [float(r["train_loss"]) for r in rows]
print("train loss by epoch:", " ".join(f"{v:.4f}" for v in loss))
ok = len(loss) >= 2 and loss[-1] < 0.9 * loss[0]
print("loss falls: " + ("yes" if ok else "NO"))
sys.exit(0 if ok else 1)
PY
