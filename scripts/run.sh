#!/usr/bin/env bash
# The main job: builds the seL4 image of system.xml (make MICROKIT_CONFIG=release), boots it on
# QEMU with its NIC on a tap in a private network namespace, and benchmarks it (UDP 1472 B and
# TCP 1460 B echo sweeps) against the same Debian guest kernel booted alone on the same emulated
# machine, in the same run: `netvm sel4-demo`. Options pass through, e.g.
#   scripts/run.sh --udp-rates 10M,50M --tcp-rates 25M --duration 2s
#   scripts/run.sh --peer-image ../shared/downloads/sddf-0.7.0-echo_server-qemu_virt_aarch64-release.img.gz
# `scripts/run.sh --host ...` runs the host-mode demo instead (`netvm demo`, no seL4, no QEMU).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--host" ]; then
    shift
    # Host mode needs neither the Microkit SDK nor sDDF's headers.
    NETVM_NO_SEL4=1 bash scripts/setup.sh
    cargo build --release --workspace --bins
    exec target/release/netvm demo "$@"
fi
bash scripts/setup.sh
cargo build --release --workspace --bins
# setup.sh records where it found or unpacked the SDK; an exported MICROKIT_SDK also does.
if [ -f .cache/sdk.env ]; then
    set -a
    # shellcheck disable=SC1091
    . .cache/sdk.env
    set +a
fi
if [ -z "${MICROKIT_SDK:-}" ]; then
    echo "scripts/run.sh: no Microkit SDK: scripts/setup.sh did not write .cache/sdk.env and MICROKIT_SDK is not set (export MICROKIT_SDK=/path/to/microkit-sdk-2.3.0, or use --host for the host-mode demo)" >&2
    exit 1
fi
export MICROKIT_SDK
exec target/release/netvm sel4-demo "$@"
