#!/usr/bin/env bash
# Slurm executor overhead (issue 11), on the one-node Slurm of .ci/slurm.sh:
#  - a toy three-step pipeline (raw source → hash → dedup, milliseconds of work each) run with
#    `--executor slurm`: per stage, submit → start → commit seen by the driver (from the
#    driver's `ran … in S s` lines), and the whole run against the same run on the local executor;
#  - the no-op `--executor slurm` rerun (target < 0.5 s, no job submitted), median of 10;
#  - Snakemake's Slurm executor on the same three steps (three tiny shell jobs), when
#    `pip install snakemake snakemake-executor-plugin-slurm` works here (in a venv), with its
#    fastest documented status settings (squeue, first check after 1 s, 1 s between rounds; no
#    sacct here). Its own back-off still adds 10 s per status round in which nothing finished.
# Usage: bench/slurm.sh [ROUNDS=5]   (after `cargo build --release` and `.ci/slurm.sh start`)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIPE=${PIPE:-$ROOT/target/release/pipe}
ROUNDS=${1:-5}
[ -x "$PIPE" ] || { echo "build first: cargo build --release"; exit 1; }
sinfo -h >/dev/null || { echo "no Slurm answers: .ci/slurm.sh start"; exit 1; }
echo "load: $(uptime)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
printf '[executor]\npoll_seconds = 0.2\n' > pipe.toml
python3 - <<'EOF'
import random
random.seed(1)
n = 200
open("train.raw", "wb").write(bytes(random.getrandbits(8) for _ in range(n * 16 * 16 * 3)))
open("labels.txt", "w").write("".join(random.choice(["1\n", "-1\n"]) for _ in range(n)))
EOF
cat > toy.yaml <<'EOF'
name: toy
stages:
  raw:
    kind: source
    format: raw
    images: train.raw
    labels: labels.txt
    height: 16
    width: 16
  hashes:
    kind: hash
    inputs: {data: raw}
  groups:
    kind: dedup
    inputs: {hashes: hashes, data: raw}
EOF

secs() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: > local.txt; : > slurm.txt; : > stage.txt
for r in $(seq "$ROUNDS"); do
  rm -rf cache
  t0=$(secs); "$PIPE" run toy.yaml --executor local >/dev/null; t1=$(secs)
  echo "$t1 - $t0" | bc >> local.txt
  rm -rf cache
  t0=$(secs); "$PIPE" run toy.yaml --executor slurm > out.txt; t1=$(secs)
  echo "$t1 - $t0" | bc >> slurm.txt
  sed -nE 's/^ +ran +[a-z]+ +in ([0-9.]+) s \(Slurm job.*/\1/p' out.txt >> stage.txt
done
local_s=$(median < local.txt); slurm_s=$(median < slurm.txt); stage_s=$(median < stage.txt)
echo "toy pipeline, 3 stages, median of $ROUNDS: local $local_s s, slurm $slurm_s s"
echo "per stage, submit → commit seen by the driver: median $stage_s s ($(wc -l < stage.txt) stages)"
echo "per-stage overhead (slurm - local) / 3: $(echo "scale=2; ($slurm_s - $local_s) / 3" | bc) s"

: > noop.txt
for _ in $(seq 10); do
  t0=$(secs); "$PIPE" run toy.yaml --executor slurm > out.txt; t1=$(secs)
  grep -q submit out.txt && { echo "a no-op rerun submitted a job"; exit 1; }
  echo "$t1 - $t0" | bc >> noop.txt
done
echo "no-op --executor slurm rerun: median $(median < noop.txt) s (target < 0.5 s)"

SMK=${SNAKEMAKE_VENV:-/tmp/smk}
if [ ! -x "$SMK/bin/snakemake" ]; then
  python3 -m venv "$SMK" && "$SMK/bin/pip" install -q snakemake snakemake-executor-plugin-slurm \
    || { echo "snakemake did not install: no comparison"; exit 0; }
fi
cat > Snakefile <<'EOF'
rule all:
    input: "groups.txt"
rule raw:
    output: "raw.txt"
    shell: "cp train.raw raw.txt"
rule hashes:
    input: "raw.txt"
    output: "hashes.txt"
    shell: "sha256sum {input} > {output}"
rule groups:
    input: "hashes.txt"
    output: "groups.txt"
    shell: "sort {input} > {output}"
EOF
: > smk.txt
for _ in $(seq "$ROUNDS"); do
  rm -f raw.txt hashes.txt groups.txt; rm -rf .snakemake
  t0=$(secs)
  "$SMK/bin/snakemake" --executor slurm --jobs 3 --quiet all \
    --default-resources slurm_partition=debug mem_mb=100 runtime=10 \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 1 \
    --seconds-between-status-checks 1 --slurm-no-account >/dev/null 2>smk.err ||
    { echo "snakemake --executor slurm failed:"; tail -5 smk.err; exit 0; }
  t1=$(secs)
  echo "$t1 - $t0" | bc >> smk.txt
done
smk_s=$(median < smk.txt)
echo "snakemake --executor slurm, same 3 steps, median of $ROUNDS: $smk_s s"
echo "ratio snakemake / pipe (whole 3-job run): $(echo "scale=1; $smk_s / $slurm_s" | bc)"
echo "load: $(uptime)"
