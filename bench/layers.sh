#!/usr/bin/env bash
# Issue 20: build and test times of two checkouts (before and after a layering change), timed in
# turn so that a drifting machine load hits both alike; prints each pair's after/before ratio.
# Usage: bench/layers.sh BEFORE_DIR AFTER_DIR [RUNS]
#   Each DIR is a checkout with its own target/ already built (`cargo build --release` and
#   `cargo test --release --no-run` once). Files touched: a report file and the store, found in
#   either layout (src/report/html/dag.rs or src/report/dag.rs; src/cache/store.rs or
#   crates/pipe-cache/src/store.rs).
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); runs=${3:-3}
pick() { for f in "${@:2}"; do [ -e "$1/$f" ] && { echo "$f"; return; }; done; echo "none of ${*:2} in $1" >&2; exit 2; }
secs() { # DIR COMMAND... -> wall seconds
  local dir=$1; shift
  ( cd "$dir" && /usr/bin/time -f %e -o /tmp/layers.$$ "$@" >/dev/null 2>&1 ) || true
  cat /tmp/layers.$$
}
pair() { # NAME FILE_KIND COMMAND...
  local name=$1 kind=$2; shift 2
  for i in $(seq "$runs"); do
    for side in before after; do
      local dir=${!side}
      if [ "$kind" = report ]; then touch "$dir/$(pick "$dir" src/report/html/dag.rs src/report/dag.rs)"; fi
      if [ "$kind" = cache ]; then touch "$dir/$(pick "$dir" src/cache/store.rs crates/pipe-cache/src/store.rs)"; fi
      eval "t_$side=\$(secs \"\$dir\" \"\$@\")"
    done
    echo "$name run $i: before ${t_before} s, after ${t_after} s, after/before $(echo "scale=3; $t_after / $t_before" | bc) (load $(cut -d' ' -f1 /proc/loadavg))"
  done
}
pair "touch report, build" report cargo build --release -q
pair "touch store, build" cache cargo build --release -q
pair "touch report, test --no-run" report cargo test --release --no-run -q
pair "touch store, test --no-run" cache cargo test --release --no-run -q
