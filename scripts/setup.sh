#!/usr/bin/env bash
# Installs everything netvm's build, tests and main job need on a fresh Debian bookworm machine.
# Idempotent: each step checks before it installs. Run as root (or with passwordless sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Debian packages: name:command-or-file that proves it is installed.
APT_PACKAGES=(
    "iproute2:/usr/sbin/ip"            # network namespaces and veth pairs for host mode and tests
    "tcpdump:/usr/bin/tcpdump"         # reads the pcap files of `netvm run --pcap` in the e2e test
    "dnsmasq-base:/usr/sbin/dnsmasq"   # a real DHCP server for the echo server's DHCP client test
    "ethtool:/usr/sbin/ethtool"        # offloads off on the host-mode veths
    "iputils-ping:/usr/bin/ping"       # the host-mode end-to-end ping check
    "vde2:/usr/bin/vde_switch"         # netvm lan's switch (vde_switch, vde_plug2tap)
    "libclang-dev:/usr/lib/llvm-14/lib/libclang.so"  # bindgen layout check against sDDF headers
)
missing=()
for entry in "${APT_PACKAGES[@]}"; do
    pkg=${entry%%:*}; probe=${entry#*:}
    [ -e "$probe" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the pinned toolchain, its components and targets come from rust-toolchain.toml; nightly is
# only for miri. rustup >= 1.28 no longer installs a toolchain file's targets on first use when
# the toolchain itself is already there (a machine image with Rust 1.95 but no aarch64 std), so
# they are installed here explicitly.
if ! command -v rustup >/dev/null 2>&1; then
    log "error: rustup not found; netvm needs rustup (https://rustup.rs) for the toolchain pinned in rust-toolchain.toml, its targets and a nightly for miri"
    exit 1
fi
rustup show active-toolchain >/dev/null
toolchain_targets=$(sed -n 's/^targets *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '"' | tr , ' ')
installed_targets=$(rustup target list --installed)
for t in $toolchain_targets; do
    if ! grep -qx "$t" <<<"$installed_targets"; then
        log "rustup toolchain install (rust-toolchain.toml: target $t missing)"
        rustup toolchain install >/dev/null
        break
    fi
done
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    log "rustup component add miri (nightly)"
    rustup toolchain install nightly --profile minimal --component miri,rust-src >/dev/null 2>&1 \
        || rustup component add miri rust-src --toolchain nightly
fi

# Python venv with the real sdfgen, for interop tests.
if ! .venv/bin/python -c 'import sdfgen' >/dev/null 2>&1; then
    log "python venv .venv with sdfgen 0.35"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "sdfgen==0.35.*"
fi
# The guest image build and QEMU (scripts/setup-guest.sh installs only what is missing).
bash scripts/setup-guest.sh
# The Microkit SDK and sDDF's headers (no registry carries them): found, checked, unpacked once
# into .cache/sdk, written to .cache/sdk.env. NETVM_NO_SEL4=1 (scripts/test.sh --no-sel4,
# scripts/run.sh --host) leaves them out.
if [ "${NETVM_NO_SEL4:-0}" != 1 ]; then
    bash scripts/sdk.sh
fi
log "ready"
