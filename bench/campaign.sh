#!/usr/bin/env bash
# Malformed-input campaign (issue 8): builds pipe in debug (the machine is shared: no release
# build), then runs bench/campaign.py, which generates 100+ bad pipelines, --set values, raw
# files, folders and CSVs and checks each fails with exit 2, no panic, and a message naming the
# file and a line/field/index. Prints a Markdown table (and the load average, for the record).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
echo "load: $(uptime)"
python3 bench/campaign.py target/debug/pipe
