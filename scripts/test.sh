#!/usr/bin/env bash
# The test command: sets up what is missing, then runs every test stage and prints a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed"; exit 1; }

export CARGO_TERM_COLOR=never
export NETVM_REQUIRE_SDFGEN=1
passed=0; failed=0; failed_names=()
stage() {
    local name=$1; shift
    printf '\n=== %s: %s\n' "$name" "$*"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1)); printf '=== %s: ok (%ss)\n' "$name" $((SECONDS - t0))
    else
        failed=$((failed + 1)); failed_names+=("$name"); printf '=== %s: FAILED (%ss)\n' "$name" $((SECONDS - t0))
    fi
}

stage fmt cargo fmt --all --check
stage clippy cargo clippy --workspace --all-targets --release -- -D warnings
# The seL4 side: every no_std crate and PD for aarch64-unknown-none.
stage clippy-aarch64 cargo clippy --target aarch64-unknown-none --release \
    -p sddf -p microkit -p net-client -p virt-rx -p virt-tx -p copier -p echo-server -p timer -p idle -p vmm -- -D warnings
stage test cargo test --workspace --release
# Model checking of the queue and its signalling protocol (its own target dir: other cfg).
stage loom env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p sddf --release --test loom
# Undefined-behaviour check of the shared-memory code; few proptest cases, miri is slow.
# (The interop tests spawn processes, which miri cannot run; the slow VecDeque model runs natively.)
miri() { env PROPTEST_CASES=2 MIRIFLAGS=-Zmiri-disable-isolation CARGO_TARGET_DIR=target/miri \
    cargo +nightly miri test -p sddf "$@"; }
stage miri-unit miri --lib --test config
stage miri-hostile miri --test model -- survives_hostile_memory
# Every cargo-fuzz target briefly (FUZZING.md has the long run).
stage fuzz-smoke env FUZZ_SMOKE_SECONDS=5 bash scripts/fuzz-smoke.sh

printf '\n'
[ ${#failed_names[@]} -eq 0 ] || printf 'failed stages: %s\n' "${failed_names[*]}"
printf 'stages: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
