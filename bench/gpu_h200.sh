#!/usr/bin/env bash
# Issue 9: pipe's GPU path (burn's wgpu backend on Vulkan) on an NVIDIA GPU, next to PyTorch on
# the same GPU. One prepared script of at most 10 minutes on the GPU machine:
#   1. B3, 2 epochs over 116,000 synthetic 56x56x3 images (95% train / 5% validation):
#      training images/s and seconds per epoch (targets: an epoch over 116k in <= 5 s);
#   2. TL3 (ResNet-50, everything trains, random init), 1 epoch over 20,000 images;
#   3. the same B3 in the machine's PyTorch (bench/b3_torch.py): pipe/PyTorch (target >= 0.8x).
#
# Two halves, because the GPU machine has no Rust toolchain:
#   bench/gpu_h200.sh prepare   here: builds `pipe --release --features vulkan`, strips it and
#                               compresses it into .gpu/pipe.xz (about 21 MB), and downloads the
#                               Vulkan loader packages into .gl/ (both git-ignored via
#                               .git/info/exclude). The release build takes about an hour on 2 cores.
#   bench/gpu_h200.sh run       there, from the repository root, with .gpu and .gl carried:
#                               device run: command "bash bench/gpu_h200.sh run",
#                               carry [".gpu", ".gl"], timeout_s 600.
# `run` also works here for a smoke test on the CPU build:
#   PIPE=target/debug/pipe DEVICE=cpu N_B3=400 N_TL3=100 TORCH_DEVICE=cpu bench/gpu_h200.sh run
# Figures go to $OUT (the device tool brings them back) or bench/out/gpu/. Each step has its own
# timeout (120 + 150 + 40 + 150 + 90 s) so the whole stays under the device limit of 600 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

prepare() {
  for d in .gpu .gl; do
    grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude
  done
  mkdir -p .gpu .gl
  cargo build --release --features vulkan --manifest-path "$root/Cargo.toml"
  local bin=${CARGO_TARGET_DIR:-$root/target}/release/pipe
  strip -o .gpu/pipe "$bin"
  xz -6 -f -T0 .gpu/pipe
  ls -l .gpu/pipe.xz
  # The loader packages (amd64) as the device README describes; the NVIDIA ICD is the driver's.
  mkdir -p /tmp/amd64/partial
  local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  du -sh .gpu .gl
}

# Seconds and throughput of stage $2 in the newest run record of the cache under $1.
record() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys
d = os.path.join(sys.argv[1], "cache", "runs")
rec = json.load(open(os.path.join(d, sorted(os.listdir(d))[-1])))
st = rec["stages"][sys.argv[2]]
rep = st.get("report") or {}
print(json.dumps({"outcome": st.get("outcome"), "seconds": st.get("seconds"),
                  "execution": rep.get("execution"), "metrics": rep.get("metrics"),
                  "error": st.get("error")}))
PY
}

# Writes a pipeline: synthetic faces -> split -> train $3 for $4 epochs.
pipeline() {
  local file=$1 count=$2 model=$3 epochs=$4
  cat > "$file" <<YAML
name: gpu-$model
stages:
  faces: {kind: source, format: synthetic, count: $count, height: 56, width: 56, channels: 3,
          seed: 9, rule: glasses_xor_light_hair, exact_duplicates: 0, near_duplicates: 0,
          conflicting_duplicates: 0}
  split: {kind: split, train: 0.95, val: 0.05, test: 0.0, seed: 9, inputs: {data: faces}}
  train: {kind: train, model: $model, epochs: $epochs, batch_size: 124, test_every: 0, seed: 9,
          inputs: {data: faces, split: split}}
YAML
}

run() {
  local out=${OUT:-$root/bench/out/gpu}
  mkdir -p "$out"
  local device=${DEVICE:-vulkan} n_b3=${N_B3:-116000} n_tl3=${N_TL3:-20000}
  local pipe=${PIPE:-}
  if [ -z "$pipe" ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
      export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    fi
    xz -dc .gpu/pipe.xz > /tmp/pipe
    chmod +x /tmp/pipe
    pipe=/tmp/pipe
  fi
  pipe=$(cd "$(dirname "$pipe")" && pwd)/$(basename "$pipe")
  {
    echo "date: $(date -u +%FT%TZ); load: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    "$pipe" --version || true
  } | tee "$out/machine.txt"

  local work=/tmp/pipe-gpu-bench
  rm -rf "$work"
  mkdir -p "$work/b3" "$work/tl3"

  # 1. B3: data stages first (CPU), then the training alone is timed by pipe itself.
  pipeline "$work/b3/b3.yaml" "$n_b3" b3 2
  echo "== B3, 2 epochs over $n_b3 images on $device (load $(cut -d' ' -f1-3 /proc/loadavg))"
  (cd "$work/b3" && timeout 120 "$pipe" run b3.yaml --until split > data.log 2>&1) || echo "B3 data stages failed: rc=$?"
  local t0=$SECONDS
  (cd "$work/b3" && timeout 150 "$pipe" run b3.yaml --device "$device" -v > train.log 2>&1) \
    && echo "B3 wall $((SECONDS - t0)) s" || echo "B3 training failed or timed out: rc=$?"
  grep -v ' INFO ' "$work/b3/train.log" | tail -4
  cp "$work/b3/train.log" "$out/b3_train.log"
  record "$work/b3" train | tee "$out/b3_record.json" || true

  # 2. TL3: one epoch over 20,000 images (random init: no weights file travels).
  pipeline "$work/tl3/tl3.yaml" "$n_tl3" tl3 1
  echo "== TL3, 1 epoch over $n_tl3 images on $device (load $(cut -d' ' -f1-3 /proc/loadavg))"
  (cd "$work/tl3" && timeout 40 "$pipe" run tl3.yaml --until split > data.log 2>&1) || echo "TL3 data stages failed: rc=$?"
  t0=$SECONDS
  (cd "$work/tl3" && timeout 150 "$pipe" run tl3.yaml --device "$device" -v > train.log 2>&1) \
    && echo "TL3 wall $((SECONDS - t0)) s" || echo "TL3 training failed or timed out: rc=$?"
  grep -v ' INFO ' "$work/tl3/train.log" | tail -4
  cp "$work/tl3/train.log" "$out/tl3_train.log"
  record "$work/tl3" train | tee "$out/tl3_record.json" || true

  # 3. The same B3 in PyTorch on the same GPU, the same split fractions.
  echo "== PyTorch B3 (load $(cut -d' ' -f1-3 /proc/loadavg))"
  DEVICE=${TORCH_DEVICE:-cuda} VAL_FRACTION=0.05 PYTHONUNBUFFERED=1 \
    timeout 90 python3 bench/b3_torch.py "$n_b3" 2 2>&1 | tee "$out/torch.log" || echo "PyTorch run failed: rc=$?"

  python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        return json.loads(open(os.path.join(out, name)).read().strip().splitlines()[-1])
    except Exception:
        return None
b3, tl3 = load("b3_record.json"), load("tl3_record.json")
torch = None
if os.path.exists(os.path.join(out, "torch.log")):
    for line in open(os.path.join(out, "torch.log")):
        if line.startswith("RESULT "):
            torch = json.loads(line[7:])
def ex(r, k):
    return ((r or {}).get("execution") or {}).get(k)
import re
from datetime import datetime
def epoch_times(log):
    """Seconds from the stage's start to each `epoch done` line (-v logs), per epoch."""
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", open(os.path.join(out, log)).read())
    except OSError:
        return []
    stamps = []
    for line in text.splitlines():
        if "cache miss: running" in line or "epoch done" in line:
            stamps.append(datetime.fromisoformat(line.split()[0].rstrip("Z")))
    return [round((b - a).total_seconds(), 2) for a, b in zip(stamps, stamps[1:])]
print("pipe B3 seconds per epoch (first includes model build and autotuning):", epoch_times("b3_train.log"))
print("pipe TL3 seconds per epoch:", epoch_times("tl3_train.log"))
pb3 = ex(b3, "train_img_per_s")
if pb3:
    print(f"pipe B3: {pb3:.0f} img/s training, {ex(b3, 'train_seconds') / 2:.2f} s per epoch (validation included)")
else:
    print(f"pipe B3: no figure ({b3})")
tt = ex(tl3, "train_img_per_s")
print(f"pipe TL3: {tt:.0f} img/s training, {ex(tl3, 'train_seconds'):.2f} s for the epoch" if tt
      else f"pipe TL3: no figure ({tl3})")
if torch:
    print(f"PyTorch B3: {torch['train_img_s']:.0f} img/s training, epochs {['%.2f' % s for s in torch['epoch_s']]} s")
    if pb3:
        print(f"pipe / PyTorch (B3 training, same GPU): {pb3 / torch['train_img_s']:.2f}x (target >= 0.8x)")
PY
  echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
}

case ${1:-} in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bench/gpu_h200.sh prepare|run" >&2; exit 2 ;;
esac
