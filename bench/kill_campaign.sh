#!/usr/bin/env bash
# Issue 8 kill campaign: SIGKILL `pipe run` at seeded random moments of a small pipeline with
# training (the quickstart on 300 faces, 3 epochs of B3), then rerun it to the end.
# After every kill and every rerun the cache is checked (examples/cache_check.rs: objects match
# their manifests, keys name present objects); each trial's final digests are compared with an
# uninterrupted run's. Prints a Markdown summary for BENCHMARKS.md.
# Usage: bench/kill_campaign.sh [TRIALS=25] [SEED=8]     (debug build: the machine is shared)
set -euo pipefail
trials=${1:-25}
seed=${2:-8}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --manifest-path "$root/Cargo.toml" --bin pipe --example cache_check
pipe=$root/target/debug/pipe
check=$root/target/debug/examples/cache_check
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/pipelines" "$work/"
cd "$work"
args=(run pipelines/quickstart.yaml --set stages.faces.count=300 --set params.epochs=3)

# stage → output digest of the cache's latest run record
digests() {
  python3 - "$1" <<'PY'
import json, os, sys
runs = os.path.join(sys.argv[1], "runs")
last = sorted(f for f in os.listdir(runs) if f.endswith(".json"))[-1]
stages = json.load(open(os.path.join(runs, last)))["stages"]
print(" ".join(f"{k}={v['digest']}" for k, v in sorted(stages.items())))
PY
}

echo "load before: $(uptime)"
t0=$(date +%s%N)
PIPE_CACHE=ref "$pipe" "${args[@]}" >/dev/null
ref_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
reference=$(digests ref)
echo "uninterrupted run: ${ref_ms} ms"

RANDOM=$seed
kills=0; in_data=0; in_training=0; in_eval=0; after_epoch=0; invalid=0; identical=0; resumed=0
for i in $(seq "$trials"); do
  cache=c$i
  # One kill, or (one trial in three) a second kill of the rerun before the final run.
  n_kills=$(( RANDOM % 3 == 0 ? 2 : 1 ))
  for _ in $(seq "$n_kills"); do
    # Uniform over the whole run, or (one kill in four) over its first second, where the data
    # stages run (training dominates the run's time).
    span=$(( RANDOM % 4 == 0 ? 1000 : ref_ms ))
    delay=$(( (RANDOM * 32768 + RANDOM) % span ))
    PIPE_CACHE=$cache "$pipe" "${args[@]}" -j 1 >/dev/null 2>&1 &
    pid=$!  # pipe itself (not a subshell), so the SIGKILL reaches it
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      kills=$((kills + 1))
      # The quickstart commits 6 stages before train_b3: 6 keys and no 7th means mid-training.
      keys=$(find "$cache/keys" -name '*.json' 2>/dev/null | wc -l)
      if [ "$keys" -lt 6 ]; then in_data=$((in_data + 1));
      elif [ "$keys" -eq 6 ]; then in_training=$((in_training + 1));
      else in_eval=$((in_eval + 1)); fi
      if [ -n "$(find "$cache/work" -name state.json 2>/dev/null)" ]; then after_epoch=$((after_epoch + 1)); fi
    fi
    wait "$pid" 2>/dev/null || true
    if ! "$check" "$cache" >"check-$i.txt"; then invalid=$((invalid + 1)); cat "check-$i.txt"; fi
  done
  out=$(PIPE_CACHE=$cache "$pipe" "${args[@]}" 2>&1) || { echo "trial $i: rerun failed"; echo "$out"; exit 1; }
  if "$check" "$cache" >"check-$i.txt"; then :; else invalid=$((invalid + 1)); cat "check-$i.txt"; fi
  if [ "$(digests "$cache")" = "$reference" ]; then identical=$((identical + 1)); else
    echo "trial $i: final digests differ"; fi
  if grep -q "resumed_from_epoch" "$cache"/runs/*.json 2>/dev/null; then resumed=$((resumed + 1)); fi
  echo "trial $i: ${n_kills} kill(s) scheduled, last after ${delay} ms; reran $(grep -c '^  ran ' <<<"$out") stages"
  rm -rf "$cache"
done
echo "load after: $(uptime)"
echo
echo "| trials | SIGKILLs | in data stages / training / evaluate | kills after an epoch checkpoint | reruns resuming a training | invalid caches | final digests identical |"
echo "|---|---|---|---|---|---|---|"
echo "| $trials | $kills | $in_data / $in_training / $in_eval | $after_epoch | $resumed | $invalid | $identical / $trials |"
[ "$invalid" -eq 0 ] && [ "$identical" -eq "$trials" ]
