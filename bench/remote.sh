#!/usr/bin/env bash
# Issue #10 benchmark, on loopback against a real S3 server (s3s-fs, started here):
# - push and pull throughput of the data half's objects (the 1.09 GB raw source object and the
#   small ones of hash/dedup/filter/split): `pipe push data.yaml` from a cache that ran the
#   pipeline with --no-push, then `pipe pull data.yaml` into a fresh cache;
# - the same server's own throughput for a plain copy of the largest file with curl (SigV4,
#   one PUT and one GET, written to disk), and the ratio pipe / curl;
# - a no-op `pipe run` of a 10-stage pipeline with the remote configured (every stage cached
#   locally), and `pipe status` of the same pipeline on a fresh cache (10 remote key lookups).
# Usage: bench/remote.sh [REPEATS]   (default 3; reuses bench/out/data/db_train.raw from
# bench/data.sh when present, else makes it). Everything goes under bench/out/remote/.
set -euo pipefail
reps=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bench/out/remote
data=$root/bench/out/data
mkdir -p "$out" "$data"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
pipe=${CARGO_TARGET_DIR:-$root/target}/release/pipe
s3s=$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")
[ -x "$s3s" ] || cargo install --locked s3s-fs --version 0.14.1 --features binary
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
echo "load: $(uptime)"

# ---- data: 116,000 images of 56x56x3 (as bench/data.sh makes them) ----
if [ ! -f "$data/db_train.raw" ] || [ ! -f "$data/label_train.txt" ]; then
  mkdir -p "$data/gen" && cd "$data/gen"
  cat > gen.yaml <<'YAML'
name: gen116k
stages:
  faces: {kind: source, format: synthetic, count: 115700, height: 56, width: 56, channels: 3,
          seed: 2019, exact_duplicates: 150, near_duplicates: 120, conflicting_duplicates: 30}
YAML
  "$pipe" run gen.yaml > gen.log
  d=$("$pipe" status gen.yaml --json | python3 -c "import json,sys; print(json.load(sys.stdin)['faces']['digest'])")
  obj=cache/objects/${d:0:2}/$d
  cp "$obj/pixels.u8" ../db_train.raw
  python3 -c "import sys; sys.stdout.write(''.join(f'{b}\n' for b in open('$obj/labels.u8','rb').read()))" > ../label_train.txt
  cd "$data" && rm -rf gen
fi

# ---- the server ----
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
rm -rf "$out/s3" && mkdir -p "$out/s3/bench"
"$s3s" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
  --secret-key "$AWS_SECRET_ACCESS_KEY" "$out/s3" > "$out/s3s.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

cd "$out"
toml() { printf '[remote]\nurl = "s3://bench/%s"\nendpoint = "http://127.0.0.1:%s"\npath_style = true\nallow_http = true\n' "$1" "$port" > "$2/pipe.toml"; }
cat > data.yaml <<YAML
name: data116k
stages:
  train_raw: {kind: source, format: raw, images: $data/db_train.raw, labels: $data/label_train.txt,
              height: 56, width: 56, channels: 3}
  hashes: {kind: hash, inputs: {data: train_raw}}
  groups: {kind: dedup, inputs: {hashes: hashes, data: train_raw}}
  clean: {kind: filter_conflicts, policy: drop_all, inputs: {groups: groups, data: train_raw}}
  split: {kind: split, train: 0.595, val: 0.105, test: 0.3, seed: 2019,
          inputs: {data: train_raw, selection: clean, groups: groups}}
YAML

# A: compute once, without uploading.
rm -rf a && mkdir a && cp data.yaml a/ && toml data a
(cd a && "$pipe" run data.yaml --no-push > run.log)
bytes=$(du -sb a/cache/objects | cut -f1)
echo "data half objects: $bytes bytes"

# The same multipart upload pipe makes (16 MiB parts, 4 in flight), by curl: on this server a
# multipart upload costs more than one PUT (s3s-fs hashes every part and then the whole object
# again on completion), so this is the plain copy that does the same work as pipe's push.
split_parts() { # FILE → $out/parts/p0000…, outside the timed copy
  rm -rf "$out/parts" && mkdir -p "$out/parts"
  split -b 16M -d -a 4 "$1" "$out/parts/p"
}
curl_multipart() { # KEY: uploads $out/parts/p*
  local url="http://127.0.0.1:$port/bench/$1" id i n xml p pids
  id=$(curl "${auth[@]}" -X POST "$url?uploads=" | sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p')
  n=0; pids=()
  for f in "$out"/parts/p*; do
    n=$((n + 1))
    # at most 4 parts in flight (the server is a job of this script too: wait on curls only)
    if (( ${#pids[@]} >= 4 )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
    curl "${auth[@]}" -o /dev/null -w '%header{etag}' -T "$f" "$url?partNumber=$n&uploadId=$id" \
      > "$f.etag" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  xml="<CompleteMultipartUpload>"
  i=0
  for f in "$out"/parts/p*[0-9]; do
    i=$((i + 1)); xml+="<Part><PartNumber>$i</PartNumber><ETag>$(cat "$f.etag")</ETag></Part>"
  done
  xml+="</CompleteMultipartUpload>"
  curl "${auth[@]}" -o /dev/null -X POST --data-binary "$xml" "$url?uploadId=$id"
}

push_s=(); pull_s=(); curl_put=(); curl_get=(); curl_mp=()
for r in $(seq "$reps"); do
  # a fresh prefix each repeat: every byte is uploaded
  toml "data$r" a
  t=$(now); (cd a && "$pipe" push data.yaml > push.log); push_s+=("$(echo "$(now) - $t" | bc)")
  rm -rf b && mkdir b && cp data.yaml b/ && toml "data$r" b
  t=$(now); (cd b && "$pipe" pull data.yaml > pull.log); pull_s+=("$(echo "$(now) - $t" | bc)")
  grep -q "5 stage(s) pulled" b/pull.log
  # the server's own plain copy of the largest file, with curl
  big=$(find a/cache/objects -type f -size +100M | head -1)
  auth=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -sS --fail)
  t=$(now); curl "${auth[@]}" -T "$big" "http://127.0.0.1:$port/bench/plain$r"; curl_put+=("$(echo "$(now) - $t" | bc)")
  t=$(now); curl "${auth[@]}" -o "$out/plain.get" "http://127.0.0.1:$port/bench/plain$r"; curl_get+=("$(echo "$(now) - $t" | bc)")
  split_parts "$big"
  t=$(now); curl_multipart "plainmp$r"; curl_mp+=("$(echo "$(now) - $t" | bc)")
  curl "${auth[@]}" -o "$out/plain.get" "http://127.0.0.1:$port/bench/plainmp$r"
  cmp "$big" "$out/plain.get"
  cmp "$big" "$out/plain.get" && rm -f "$out/plain.get"
  rm -rf b "$out/s3/bench/data$r" "$out/s3/bench/plain$r" "$out/s3/bench/plainmp$r" "$out/parts"
done
big_bytes=$(stat -c %s "$big")
mp=$(printf '%s\n' "${push_s[@]}" | median); ml=$(printf '%s\n' "${pull_s[@]}" | median)
cp_=$(printf '%s\n' "${curl_put[@]}" | median); cg=$(printf '%s\n' "${curl_get[@]}" | median)
cm=$(printf '%s\n' "${curl_mp[@]}" | median)
rate() { echo "scale=1; $1 / $2 / 1000000" | bc; }
echo "pipe push: median ${mp} s = $(rate "$bytes" "$mp") MB/s   (${push_s[*]})"
echo "pipe pull: median ${ml} s = $(rate "$bytes" "$ml") MB/s   (${pull_s[*]})"
echo "curl PUT of $big_bytes bytes: median ${cp_} s = $(rate "$big_bytes" "$cp_") MB/s   (${curl_put[*]})"
echo "curl GET of $big_bytes bytes: median ${cg} s = $(rate "$big_bytes" "$cg") MB/s   (${curl_get[*]})"
echo "curl multipart PUT (16 MiB parts, 4 in flight) of $big_bytes bytes: median ${cm} s = $(rate "$big_bytes" "$cm") MB/s   (${curl_mp[*]})"
echo "ratio push/curl PUT: $(echo "scale=2; ($bytes / $mp) / ($big_bytes / $cp_)" | bc)"
echo "ratio push/curl multipart PUT: $(echo "scale=2; ($bytes / $mp) / ($big_bytes / $cm)" | bc)"
echo "ratio pull/curl GET: $(echo "scale=2; ($bytes / $ml) / ($big_bytes / $cg)" | bc)"

# ---- no-op run consulting the remote: 10 cached stages ----
mkdir -p noop && cd noop
python3 - <<'PY'
import random
random.seed(1)
n, h, w, c = 400, 16, 16, 3
open("db.raw", "wb").write(bytes(random.randrange(256) for _ in range(n * h * w * c)))
open("labels.txt", "w").write("".join(f"{random.choice([-1, 1])}\n" for _ in range(n)))
stages = ["  src: {kind: source, format: raw, images: db.raw, labels: labels.txt, height: 16, width: 16}"]
for i in range(9):
    stages.append(f"  split{i}: {{kind: split, seed: {i}, inputs: {{data: src}}}}")
open("ten.yaml", "w").write("name: ten\nstages:\n" + "\n".join(stages) + "\n")
PY
toml ten .
rm -rf cache && "$pipe" run ten.yaml > first.log
grep -q "pushed 10 stage" first.log
noop=(); status=()
for r in $(seq 5); do
  t=$(now); "$pipe" run ten.yaml > noop.log; noop+=("$(echo "$(now) - $t" | bc)")
  grep -q "0 ran, 10 cached" noop.log
  rm -rf fresh && mkdir fresh
  t=$(now); "$pipe" --cache fresh/cache status ten.yaml > status.log; status+=("$(echo "$(now) - $t" | bc)")
  [ "$(grep -c ' remote ' status.log)" = 10 ]
done
echo "no-op run, 10 stages cached, remote configured: median $(printf '%s\n' "${noop[@]}" | median) s   (${noop[*]})"
echo "status on a fresh cache, 10 stages on the remote: median $(printf '%s\n' "${status[@]}" | median) s   (${status[*]})"
echo "load: $(uptime)"
