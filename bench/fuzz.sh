#!/usr/bin/env bash
# Property-test fuzzing (issue 8), outside CI: reruns the `fuzz` property tests of the YAML
# loader (src/spec/fuzz.rs) and the raw/folder source readers (src/stages/source/fuzz.rs) with
# PROPTEST_CASES cases per property (default 5000), round after round with fresh random seeds,
# until FUZZ_SECONDS (default 600) have passed or a property fails. proptest prints a failing
# case shrunk to its minimum: add it to the unit tests as a regression test.
#   bench/fuzz.sh                  # 10 minutes
#   FUZZ_SECONDS=60 PROPTEST_CASES=1000 bench/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${FUZZ_SECONDS:-600}
cases=${PROPTEST_CASES:-5000}
cargo test --lib --quiet --no-run
start=$(date +%s)
round=0
while (( $(date +%s) - start < budget )); do
    round=$((round + 1))
    left=$(( budget - ($(date +%s) - start) ))
    echo "round $round: $cases cases per property (${left}s left)"
    set +e
    PROPTEST_CASES=$cases timeout "$left" cargo test --lib --quiet -- fuzz
    rc=$?
    set -e
    if (( rc == 124 )); then
        echo "time budget reached during round $round: no failure"
        exit 0
    elif (( rc != 0 )); then
        echo "a property failed in round $round (see above)"
        exit "$rc"
    fi
done
echo "$round rounds in ${budget}s: no failure"
