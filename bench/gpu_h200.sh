#!/usr/bin/env bash
# Issues 9/19: pipe's GPU paths (burn-cuda and burn's wgpu backend on Vulkan) on an NVIDIA GPU,
# next to PyTorch on the same GPU. One prepared script of at most 10 minutes on the GPU machine:
#   1. B3, 2 epochs over 116,000 synthetic 56x56x3 images (95% train / 5% validation), on each
#      device: training images/s and seconds per epoch (target: an epoch over 116k in <= 5 s);
#   2. TL3 (ResNet-50, everything trains, random init), 1 epoch over 20,000 images, each device;
#   3. the same B3 in the machine's PyTorch (bench/b3_torch.py): pipe/PyTorch (target >= 0.8x).
#
# Two halves, because the GPU machine has no Rust toolchain:
#   bench/gpu_h200.sh prepare   here: builds `pipe` with `--features cuda` (target-cuda/) and with
#                               `--features vulkan` (target-vulkan/), strips both, compresses them
#                               into .gpu/pipe-cuda.xz and .gpu/pipe-vulkan.xz, and downloads the
#                               Vulkan loader packages into .gl/ (all git-ignored); fails if the
#                               whole exceeds the 64 MiB the device tool carries. Each build takes
#                               an hour or more on 2 shared cores (cargo resumes a partial one).
#                               The CUDA binary is built for CUDA 12.8 (CUDARC_CUDA_VERSION=12080:
#                               driver >= 570; NVRTC 12 found at run time, e.g. PyTorch's).
#   bench/gpu_h200.sh run [cuda|vulkan|all]
#                               there, from the repository root, with .gpu and .gl carried:
#                               device run: command "bash bench/gpu_h200.sh run",
#                               carry [".gpu", ".gl"], timeout_s 600.
# `run` first checks that the binaries, the GPU (nvidia-smi), NVRTC (cuda) and PyTorch with CUDA
# are there, and stops within seconds (exit 1) naming what is missing (TORCH=0 skips PyTorch).
# Smoke test of the whole flow on this machine's CPU build:
#   PIPE=target/release/pipe DEVICES=cpu N_B3=400 N_TL3=100 TORCH_DEVICE=cpu bench/gpu_h200.sh run
# Figures go to $OUT (the device tool brings them back) or bench/out/gpu/. Steps have their own
# timeouts (data 60 + 30 s, per device B3 100 s and TL3 90 s, PyTorch 80 s: at most 550 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() {
  echo "gpu_h200: $*" >&2
  exit 1
}

prepare() {
  mkdir -p .gpu .gl
  local feature
  for feature in cuda vulkan; do
    local target=$root/target-$feature t0=$SECONDS
    echo "== cargo build --release --features $feature (CARGO_TARGET_DIR=$target)"
    CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-12080} CARGO_TARGET_DIR=$target nice -n 15 \
      cargo build --release --features "$feature" --bin pipe --manifest-path "$root/Cargo.toml"
    echo "build: $((SECONDS - t0)) s"
    strip -o ".gpu/pipe-$feature" "$target/release/pipe"
    xz -9 -f -T0 ".gpu/pipe-$feature"
  done
  # The loader packages (amd64) as the device README describes; the NVIDIA ICD is the driver's.
  mkdir -p /tmp/amd64/partial
  local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  rm -f .gl/*.deb
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  ls -l .gpu .gl
  local total
  total=$(du -cb .gpu/*.xz .gl/*.deb | tail -1 | cut -f1)
  echo "carried: $total bytes (limit 67108864)"
  [ "$total" -le 67108864 ] || die "the .gpu and .gl bundle is $total bytes, over 64 MiB"
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

# The directory of PyTorch's pip-installed NVRTC, if any (NVRTC compiles cubecl's CUDA kernels).
torch_nvrtc_dir() {
  python3 - <<'PY' 2>/dev/null || true
import glob, os, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
hits = [p for s in dirs for p in glob.glob(os.path.join(s, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))]
hits += [p for s in dirs for p in glob.glob(os.path.join(s, "nvidia", "cu*", "lib", "libnvrtc.so*"))]
print(os.path.dirname(sorted(hits)[0]) if hits else "")
PY
}

# Checks everything `run` needs before anything long starts; installs the binaries in /tmp.
preflight() {
  local devices=$1 d
  if [ -n "${PIPE:-}" ]; then
    [ -x "$PIPE" ] || die "PIPE=$PIPE is not an executable file"
  else
    for d in $devices; do
      [ -f ".gpu/pipe-$d.xz" ] || die "missing .gpu/pipe-$d.xz: run 'bench/gpu_h200.sh prepare' \
on the build machine, then carry .gpu (and .gl) to this one"
    done
    nvidia-smi -L >/dev/null 2>&1 || die "no NVIDIA GPU here: 'nvidia-smi -L' failed"
    for d in $devices; do
      xz -dc ".gpu/pipe-$d.xz" > "/tmp/pipe-$d" || die "cannot decompress .gpu/pipe-$d.xz"
      chmod +x "/tmp/pipe-$d"
      "/tmp/pipe-$d" --version >/dev/null || die "/tmp/pipe-$d does not start"
    done
  fi
  case " $devices " in
    *" vulkan "*)
      if [ -z "${PIPE:-}" ]; then
        ls .gl/*.deb >/dev/null 2>&1 || die "missing .gl/*.deb (the Vulkan loader): run prepare, carry .gl"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
        if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1; then
          local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
          [ -e $icd ] || die "no NVIDIA Vulkan ICD file (looked in /usr/share, /etc and $icd)"
          export VK_DRIVER_FILES=$icd
        fi
      fi ;;
  esac
  case " $devices " in
    *" cuda "*)
      if ! ldconfig -p | grep -q 'libnvrtc\.so'; then
        local nv
        nv=$(torch_nvrtc_dir)
        [ -n "$nv" ] || die "no NVRTC (libnvrtc.so*) in the linker path or PyTorch's nvidia packages"
        export LD_LIBRARY_PATH=$nv${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        echo "NVRTC from $nv"
      fi ;;
  esac
  if [ "${TORCH:-1}" = 1 ]; then
    local want=${TORCH_DEVICE:-cuda}
    python3 -c "import torch, sys; sys.exit(0 if '$want' == 'cpu' or torch.cuda.is_available() else 1)" \
      2>/dev/null || die "PyTorch (with CUDA) is not importable by python3 (TORCH=0 skips it)"
  fi
}

# B3 and TL3 on device $1 with binary $2; the data stages are cached after the first device.
bench_device() {
  local device=$1 pipe=$2 work=$3 out=$4 t0
  echo "== B3, 2 epochs over $n_b3 images on $device (load $(cut -d' ' -f1-3 /proc/loadavg))"
  t0=$SECONDS
  (cd "$work/b3" && timeout 100 "$pipe" run b3.yaml --device "$device" -v > "train-$device.log" 2>&1) \
    && echo "B3 wall $((SECONDS - t0)) s" || echo "B3 training on $device failed or timed out: rc=$?"
  grep -v 'INFO' "$work/b3/train-$device.log" | tail -4
  cp "$work/b3/train-$device.log" "$out/b3_train_$device.log"
  record "$work/b3" train | tee "$out/b3_record_$device.json" || true

  echo "== TL3, 1 epoch over $n_tl3 images on $device (load $(cut -d' ' -f1-3 /proc/loadavg))"
  t0=$SECONDS
  (cd "$work/tl3" && timeout 90 "$pipe" run tl3.yaml --device "$device" -v > "train-$device.log" 2>&1) \
    && echo "TL3 wall $((SECONDS - t0)) s" || echo "TL3 training on $device failed or timed out: rc=$?"
  grep -v 'INFO' "$work/tl3/train-$device.log" | tail -4
  cp "$work/tl3/train-$device.log" "$out/tl3_train_$device.log"
  record "$work/tl3" train | tee "$out/tl3_record_$device.json" || true
}

run() {
  local which=${1:-all} devices
  case $which in
    all) devices="cuda vulkan" ;;
    cuda | vulkan) devices=$which ;;
    *) die "unknown device set '$which' (cuda, vulkan or all)" ;;
  esac
  [ -n "${PIPE:-}" ] && devices=${DEVICES:-$devices}
  local out=${OUT:-$root/bench/out/gpu}
  mkdir -p "$out"
  n_b3=${N_B3:-116000}
  n_tl3=${N_TL3:-20000}
  preflight "$devices"
  local bin_of d
  bin_of() { if [ -n "${PIPE:-}" ]; then echo "$(cd "$(dirname "$PIPE")" && pwd)/$(basename "$PIPE")"; else echo "/tmp/pipe-$1"; fi; }
  {
    echo "date: $(date -u +%FT%TZ); load: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; devices: $devices"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    for d in $devices; do echo "$d: $("$(bin_of "$d")" --version)"; done
  } | tee "$out/machine.txt"

  local work=/tmp/pipe-gpu-bench first
  rm -rf "$work"
  mkdir -p "$work/b3" "$work/tl3"
  pipeline "$work/b3/b3.yaml" "$n_b3" b3 2
  pipeline "$work/tl3/tl3.yaml" "$n_tl3" tl3 1
  first=$(bin_of "${devices%% *}")
  echo "== data stages (load $(cut -d' ' -f1-3 /proc/loadavg))"
  (cd "$work/b3" && timeout 60 "$first" run b3.yaml --until split > data.log 2>&1) || echo "B3 data stages failed: rc=$?"
  (cd "$work/tl3" && timeout 30 "$first" run tl3.yaml --until split > data.log 2>&1) || echo "TL3 data stages failed: rc=$?"
  for d in $devices; do
    bench_device "$d" "$(bin_of "$d")" "$work" "$out"
  done

  if [ "${TORCH:-1}" = 1 ]; then
    echo "== PyTorch B3 (load $(cut -d' ' -f1-3 /proc/loadavg))"
    DEVICE=${TORCH_DEVICE:-cuda} VAL_FRACTION=0.05 PYTHONUNBUFFERED=1 \
      timeout 80 python3 bench/b3_torch.py "$n_b3" 2 2>&1 | tee "$out/torch.log" || echo "PyTorch run failed: rc=$?"
  fi

  python3 - "$out" $devices <<'PY' | tee "$out/summary.txt"
import json, os, re, sys
from datetime import datetime
out, devices = sys.argv[1], sys.argv[2:]
def load(name):
    try:
        return json.loads(open(os.path.join(out, name)).read().strip().splitlines()[-1])
    except Exception:
        return None
def ex(r, k):
    return ((r or {}).get("execution") or {}).get(k)
def epoch_times(log):
    """Seconds from the stage's start to each `epoch done` line (-v logs), per epoch."""
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", open(os.path.join(out, log)).read())
    except OSError:
        return []
    stamps = [datetime.fromisoformat(line.split()[0].rstrip("Z")) for line in text.splitlines()
              if "cache miss: running" in line or "epoch done" in line]
    return [round((b - a).total_seconds(), 2) for a, b in zip(stamps, stamps[1:])]
torch = None
if os.path.exists(os.path.join(out, "torch.log")):
    for line in open(os.path.join(out, "torch.log")):
        if line.startswith("RESULT "):
            torch = json.loads(line[7:])
for d in devices:
    b3, tl3 = load(f"b3_record_{d}.json"), load(f"tl3_record_{d}.json")
    print(f"[{d}] B3 seconds per epoch (first includes model build and autotuning):",
          epoch_times(f"b3_train_{d}.log"))
    pb3 = ex(b3, "train_img_per_s")
    if pb3:
        print(f"[{d}] pipe B3: {pb3:.0f} img/s training, {ex(b3, 'train_seconds') / 2:.2f} s per epoch (validation included)")
    else:
        print(f"[{d}] pipe B3: no figure ({b3})")
    tt = ex(tl3, "train_img_per_s")
    print(f"[{d}] pipe TL3: {tt:.0f} img/s training, {ex(tl3, 'train_seconds'):.2f} s for the epoch" if tt
          else f"[{d}] pipe TL3: no figure ({tl3})")
    if torch and pb3:
        print(f"[{d}] pipe / PyTorch (B3 training, same GPU): {pb3 / torch['train_img_s']:.2f}x (target >= 0.8x)")
if torch:
    print(f"PyTorch B3: {torch['train_img_s']:.0f} img/s training, epochs {['%.2f' % s for s in torch['epoch_s']]} s")
PY
  echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
}

case ${1:-} in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) echo "usage: bench/gpu_h200.sh prepare | run [cuda|vulkan|all]" >&2; exit 2 ;;
esac
