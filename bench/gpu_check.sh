#!/usr/bin/env bash
# Issue 19: checks that pipe's GPU path computes what its CPU path computes, without a GPU, on
# Mesa's software Vulkan driver (lavapipe, Debian `mesa-vulkan-drivers`). Not part of CI (the
# `vulkan` build takes over an hour on 2 cores; the check itself a few minutes, see BENCHMARKS.md
# "GPU path (issue 19)"). One binary does both sides: a `--features vulkan` build also has the
# default CPU backend.
#   1. parity (examples/gpu_parity.rs): B1, B3 and a ResNet-50 bottleneck block, forward outputs
#      and every parameter gradient on Vulkan against the CPU backend, same weights and inputs
#      (max |diff| / max |cpu| <= TOL per tensor);
#   2. B1 trained 2 epochs on 400 synthetic 56x56 faces on each device: validation balanced
#      accuracies within 3 points;
#   3. each of the two models predicts 1,000 unseen images on both devices: >= 99.5% of the
#      predicted labels agree (a CPU-trained model on Vulkan, a Vulkan-trained one on CPU), and
#      both score (balanced accuracy against the truth) the same;
#   4. the `.safetensors` exports of the two trainings have the same tensors, shapes and dtypes;
#   5. timing (no pass/fail): B1 and B3 training throughput on each device, from the run records
#      (Vulkan slower than the CPU here is expected: lavapipe runs the shaders on the 2 cores).
# Usage: bench/gpu_check.sh
#   PIPE=path PARITY=path   binaries (default target-vulkan/release/{pipe,examples/gpu_parity};
#                           built with `cargo build --release --features vulkan` when missing)
#   DEVICE=vulkan           the GPU device to check against cpu
#   TOL=1e-4                parity tolerance
#   VK_DRIVER_FILES=…       Vulkan driver; default lavapipe's ICD only (LAVAPIPE=0: the loader's
#                           choice, e.g. a real GPU)
# Writes under bench/out/gpu_check/ (git-ignored). Exit 0 = every check passed, 1 = one failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bench/out/gpu_check
device=${DEVICE:-vulkan}
tol=${TOL:-1e-4}
target=${CARGO_TARGET_DIR:-$root/target-vulkan}
pipe=${PIPE:-$target/release/pipe}
parity=${PARITY:-$target/release/examples/gpu_parity}
start=$SECONDS

if [ -z "${PIPE:-}${PARITY:-}" ] && { [ ! -x "$pipe" ] || [ ! -x "$parity" ]; }; then
  echo "building pipe and examples/gpu_parity with --features vulkan into $target (over an hour on 2 cores)"
  CARGO_TARGET_DIR=$target nice -n 15 cargo build --release --features vulkan \
    --manifest-path "$root/Cargo.toml" --bin pipe --example gpu_parity
fi
for b in "$pipe" "$parity"; do
  [ -x "$b" ] || { echo "gpu_check: $b is missing or not executable" >&2; exit 1; }
done
pipe=$(cd "$(dirname "$pipe")" && pwd)/$(basename "$pipe")
parity=$(cd "$(dirname "$parity")" && pwd)/$(basename "$parity")

if [ "${LAVAPIPE:-1}" = 1 ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  # Mesa 22 names the ICD lvp_icd.x86_64.json, Mesa 25 (bookworm-backports) lvp_icd.json
  lavapipe_icd() { ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -n 1; }
  if [ -z "$(lavapipe_icd)" ]; then
    echo "installing mesa-vulkan-drivers (lavapipe)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
  export VK_DRIVER_FILES=$(lavapipe_icd)
  echo "driver: lavapipe, mesa $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null || echo '?')"
fi

# the Vulkan loader and Mesa want a runtime directory (a container often has none)
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR=$(mktemp -d)
fi

rm -rf "$out"
mkdir -p "$out"
cd "$out"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; device $device against cpu"

# 1. Parity of outputs and gradients.
echo "== parity (tolerance $tol)"
t0=$SECONDS
set +e
"$parity" --device "$device" --tol "$tol" > parity.log 2>&1
parity_rc=$?
set -e
grep -v '^RESULT ' parity.log | tail -n 40
echo "parity: exit $parity_rc after $((SECONDS - t0)) s"
[ $parity_rc -ge 128 ] && echo "parity killed by signal $((parity_rc - 128))"

# 2.-5. Trainings and predictions through the CLI, both devices in one pipeline.
cat > check.yaml <<YAML
name: gpu-check
stages:
  faces: {kind: source, format: synthetic, count: 400, height: 56, width: 56, channels: 3,
          seed: 5, rule: light_hair, exact_duplicates: 0, near_duplicates: 0,
          conflicting_duplicates: 0}
  split: {kind: split, train: 0.7, val: 0.3, test: 0.0, seed: 5, inputs: {data: faces}}
  unseen: {kind: source, format: synthetic, count: 1000, height: 56, width: 56, channels: 3,
           seed: 6, rule: light_hair, exact_duplicates: 0, near_duplicates: 0,
           conflicting_duplicates: 0}
  b1_cpu: {kind: train, model: b1, epochs: 2, batch_size: 32, test_every: 0, seed: 5,
           device: cpu, inputs: {data: faces, split: split}}
  b1_gpu: {kind: train, model: b1, epochs: 2, batch_size: 32, test_every: 0, seed: 5,
           device: $device, inputs: {data: faces, split: split}}
  b3_cpu: {kind: train, model: b3, epochs: 1, batch_size: 32, test_every: 0, seed: 5,
           device: cpu, inputs: {data: faces, split: split}}
  b3_gpu: {kind: train, model: b3, epochs: 1, batch_size: 32, test_every: 0, seed: 5,
           device: $device, inputs: {data: faces, split: split}}
  cpu_model_on_cpu: {kind: predict, device: cpu, hash_override: false,
                     inputs: {test: unseen, model: b1_cpu}}
  cpu_model_on_gpu: {kind: predict, device: $device, hash_override: false,
                     inputs: {test: unseen, model: b1_cpu}}
  gpu_model_on_gpu: {kind: predict, device: $device, hash_override: false,
                     inputs: {test: unseen, model: b1_gpu}}
  gpu_model_on_cpu: {kind: predict, device: cpu, hash_override: false,
                     inputs: {test: unseen, model: b1_gpu}}
YAML
echo "== pipeline (2 B1 trainings, 2 B3 trainings, 4 predictions over 1,000 images)"
t0=$SECONDS
set +e
"$pipe" run check.yaml -j 1 > run.log 2>&1
run_rc=$?
set -e
grep -v ' INFO ' run.log | tail -n 30
echo "pipe run: exit $run_rc after $((SECONDS - t0)) s"
[ $run_rc -ge 128 ] && echo "pipe killed by signal $((run_rc - 128))"

set +e
python3 - "$out" "$parity_rc" "$run_rc" "$device" <<'PY' | tee summary.txt
import csv, json, os, struct, sys
out, parity_rc, run_rc, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
failed = []

def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
    if not ok:
        failed.append(what)

result = None
for line in open(os.path.join(out, "parity.log"), errors="replace"):
    if line.startswith("RESULT "):
        result = json.loads(line[7:])
if result:
    w = result["worst"]
    check(parity_rc == 0 and not result["off"],
          f"parity: {result['tensors']} tensors (B1, B3, bottleneck: outputs, losses, gradients) "
          f"within {result['tolerance']:g}; worst {w['name']} {w['rel']:.2e}; "
          f"{result['bit_identical']} bit-identical")
else:
    check(False, f"parity: no result (exit {parity_rc})")

runs = os.path.join(out, "cache", "runs")
rec = None
if os.path.isdir(runs) and os.listdir(runs):
    rec = json.load(open(os.path.join(runs, sorted(os.listdir(runs))[-1])))
if rec is None or run_rc != 0:
    check(False, f"pipeline: exit {run_rc}")
stages = (rec or {}).get("stages", {})

def obj(stage):
    d = (stages.get(stage) or {}).get("digest")
    return os.path.join(out, "cache", "objects", d[:2], d) if d else None

def find(stage, name):
    o = obj(stage)
    if not o:
        return None
    for dirpath, _, files in os.walk(o):
        if name in files:
            return os.path.join(dirpath, name)
    return None

def last_val_bacc(stage):
    p = find(stage, "curve.csv")
    return float(list(csv.DictReader(open(p)))[-1]["val_bacc"]) if p else None

a, b = last_val_bacc("b1_cpu"), last_val_bacc("b1_gpu")
if a is not None and b is not None:
    check(abs(a - b) <= 0.03,
          f"B1 2 epochs, 400 images: validation balanced accuracy cpu {a:.4f}, {device} {b:.4f} "
          f"(|diff| {abs(a - b) * 100:.2f} points <= 3)")
else:
    check(False, "B1 trainings: no curve.csv")

def probs(stage):
    p = find(stage, "probabilities.csv")
    if not p:
        return None
    rows = list(csv.DictReader(open(p)))
    return [float(r["probability"]) for r in rows], [r["model_label"] for r in rows]

truth_file = find("unseen", "labels.u8")
truth = list(open(truth_file, "rb").read()) if truth_file else None

def bacc(labels):
    pos = [i for i, t in enumerate(truth) if t == 1]
    neg = [i for i, t in enumerate(truth) if t == 0]
    tpr = sum(labels[i] == "1" for i in pos) / max(len(pos), 1)
    tnr = sum(labels[i] == "0" for i in neg) / max(len(neg), 1)
    return (tpr + tnr) / 2

for model, same, other in [("cpu", "cpu_model_on_cpu", "cpu_model_on_gpu"),
                           ("gpu", "gpu_model_on_gpu", "gpu_model_on_cpu")]:
    p, q = probs(same), probs(other)
    trained = "cpu" if model == "cpu" else device
    if not (p and q and truth):
        check(False, f"{trained}-trained B1: predictions missing")
        continue
    agree = sum(x == y for x, y in zip(p[1], q[1])) / len(p[1])
    diff = max(abs(x - y) for x, y in zip(p[0], q[0]))
    ran = device if model == "cpu" else "cpu"
    check(agree >= 0.995,
          f"{trained}-trained B1 predicted on {ran}: {agree * 100:.2f}% of {len(p[1])} labels "
          f"agree with {trained} (>= 99.5%), max |prob diff| {diff:.2e}; balanced accuracy "
          f"{bacc(q[1]):.4f} on {ran}, {bacc(p[1]):.4f} on {trained}")

def st_read(path):
    """A safetensors file: {name: (dtype, shape, values)} (F32 values as an array)."""
    from array import array
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        a, b = v["data_offsets"]
        vals = array("f", data[a:b]) if v["dtype"] == "F32" else None
        out[k] = (v["dtype"], v["shape"], vals)
    return out

def st_files(stage):
    o = obj(stage)
    return sorted(f for f in os.listdir(o) if f.endswith(".safetensors")) if o else []

names = st_files("b1_cpu")
if names and names == st_files("b1_gpu"):
    same, worst = True, (0.0, "")
    for n in names:
        a, b = st_read(os.path.join(obj("b1_cpu"), n)), st_read(os.path.join(obj("b1_gpu"), n))
        same &= {k: v[:2] for k, v in a.items()} == {k: v[:2] for k, v in b.items()}
        same &= all(v[0] == "F32" for v in a.values())
        if n == "last.safetensors" and same:
            for k in a:
                scale = max(abs(x) for x in a[k][2]) or 1.0
                rel = max(abs(x - y) for x, y in zip(a[k][2], b[k][2])) / scale
                worst = max(worst, (rel, k))
    check(same, f"safetensors: {', '.join(names)} of the cpu and {device} trainings hold the "
                f"same F32 tensors and shapes; trained weights (last) differ by at most "
                f"{worst[0]:.2e} of their scale ({worst[1]})")
else:
    check(False, f"safetensors: exports differ or are missing ({names} / {st_files('b1_gpu')})")

print("timing (training passes, from the run records; load "
      + " ".join(open("/proc/loadavg").read().split()[:3]) + "):")
for m in ("b1", "b3"):
    for dev in ("cpu", "gpu"):
        st = stages.get(f"{m}_{dev}") or {}
        ex = (st.get("report") or {}).get("execution") or {}
        ips = ex.get("train_img_per_s")
        name = "cpu" if dev == "cpu" else device
        backend = ((st.get("key_parts") or {}).get("implementation") or {}).get("backend")
        if ips:
            print(f"  {m.upper()} on {name} (backend {backend}): {ips:.1f} img/s, "
                  f"{32 / ips * 1000:.0f} ms per 32-image step (forward, backward, Adam)")
        else:
            print(f"  {m.upper()} on {name}: no figure")
print("RESULT " + ("ok" if not failed else f"{len(failed)} check(s) failed"))
sys.exit(1 if failed else 0)
PY
rc=$?
set -e
echo "gpu_check: $((SECONDS - start)) s in all"
exit $rc
