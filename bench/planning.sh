#!/usr/bin/env bash
# Planning at scale (issue 18, item 4): a generated pipeline of N stages — N/5 groups of
# synthetic source (16 images of 8x8) → hash → dedup → filter_conflicts → split, the splits and
# every other source seeded from `params.seed` — is run once; then, timed (median of ROUNDS):
#  - `status --set params.seed=2`: every stage stale (half with a changed field, the rest
#    because an upstream stage will run), every reason computed;
#  - `run --dry-run --set params.seed=2`: the same plan, printed as a run would start from it;
#  - `status` with nothing changed (every stage cached).
# Before the fix each stale stage re-read and parsed every run record: `status` took 5.8 s at
# 1,000 stages and over 600 s at 10,000 (issue 18). Target: under 2 s at 10,000.
# Usage: bench/planning.sh [N…]   (default: 1000 10000; ROUNDS=3; after cargo build --release)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIPE=${PIPE:-$ROOT/target/release/pipe}
ROUNDS=${ROUNDS:-3}
[ -x "$PIPE" ] || { echo "build first: cargo build --release"; exit 1; }
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_cmd() { # rounds cmd...
  local n=$1; shift
  for _ in $(seq "$n"); do
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}

generate() { # stages → YAML on stdout
  local groups=$(($1 / 5))
  printf 'name: gen\nparams:\n  seed: 1\nstages:\n'
  for i in $(seq 0 $((groups - 1))); do
    local seed=$i
    [ $((i % 2)) -eq 0 ] && seed='"${params.seed}"'
    printf '  s%d: {kind: source, format: synthetic, count: 16, height: 16, width: 16, seed: %s, exact_duplicates: 2, near_duplicates: 0, conflicting_duplicates: 0}\n' "$i" "$seed"
    printf '  h%d: {kind: hash, inputs: {data: s%d}}\n' "$i" "$i"
    printf '  g%d: {kind: dedup, inputs: {hashes: h%d, data: s%d}}\n' "$i" "$i" "$i"
    printf '  c%d: {kind: filter_conflicts, inputs: {groups: g%d, data: s%d}}\n' "$i" "$i" "$i"
    printf '  p%d: {kind: split, seed: "${params.seed}", inputs: {data: s%d, selection: c%d, groups: g%d}}\n' "$i" "$i" "$i" "$i"
  done
}

WORK=${WORK:-$(mktemp -d)}
echo "pipe $("$PIPE" --version), $(nproc) cores; work in $WORK"
for n in "${SIZES[@]}"; do
  d=$WORK/n$n
  mkdir -p "$d"
  cd "$d"
  generate "$n" > gen.yaml
  if [ ! -d cache/runs ]; then
    t0=$(date +%s.%N)
    "$PIPE" run gen.yaml -j 2 >/dev/null
    t1=$(date +%s.%N)
    printf '%6d stages: first run %.1f s\n' "$n" "$(echo "$t1 - $t0" | bc -l)"
  fi
  stale=$("$PIPE" status gen.yaml --set params.seed=2 | grep -c ' stale ' || true)
  st=$(time_cmd "$ROUNDS" "$PIPE" status gen.yaml --set params.seed=2)
  dry=$(time_cmd "$ROUNDS" "$PIPE" run gen.yaml --dry-run --set params.seed=2)
  noop=$(time_cmd "$ROUNDS" "$PIPE" status gen.yaml)
  printf '%6d stages (%d stale): status --set %.3f s, run --dry-run --set %.3f s, status (all cached) %.3f s; load %s\n' \
    "$n" "$stale" "$st" "$dry" "$noop" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
