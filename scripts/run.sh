#!/usr/bin/env bash
# The main job: builds everything, then runs the echo system of system.xml in host mode on a
# private virtual LAN and benchmarks it against a Linux kernel echo in the same run
# (`netvm demo`; options pass through, e.g. --udp-rates 100M,1G --duration 2s).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace --bins
exec target/release/netvm demo "$@"
