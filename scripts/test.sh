#!/usr/bin/env bash
# The test command: sets up what is missing, then runs every test stage and prints a summary.
#
#   scripts/test.sh [--allow-skip] [--no-sel4]
#
# A test that cannot run here (no root, no SDK, a missing tool) fails the run: the command sets
# NETVM_NO_SKIP, which turns every SKIPPED into a failure (crates/testkit). Either way the run
# ends with the list of skipped tests, collected in target/skipped.log.
#   --allow-skip  a test that cannot run passes, and is listed as NOT TESTED at the end;
#   --no-sel4     opts out of the seL4 stage (the Microkit SDK is then not needed); the run says
#                 loudly that the real target was not tested.
# CI (.ci/run) passes neither.
set -uo pipefail
cd "$(dirname "$0")/.."

allow_skip=0; sel4=1
for arg in "$@"; do
    case $arg in
        --allow-skip) allow_skip=1 ;;
        --no-sel4) sel4=0 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "scripts/test.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

if [ $sel4 -eq 0 ]; then export NETVM_NO_SEL4=1; fi
bash scripts/setup.sh || { echo "setup failed"; exit 1; }
if [ $sel4 -eq 1 ]; then
    # MICROKIT_SDK and SDDF_INCLUDE, found by scripts/sdk.sh (run by setup.sh).
    # shellcheck disable=SC1091
    . .cache/sdk.env
fi

export CARGO_TERM_COLOR=never
mkdir -p target
export NETVM_SKIP_LOG=$PWD/target/skipped.log
: > "$NETVM_SKIP_LOG"
if [ $allow_skip -eq 0 ]; then export NETVM_NO_SKIP=1; else unset NETVM_NO_SKIP; fi

passed=0; failed=0; failed_names=(); timings=()
stage() {
    local name=$1; shift
    printf '\n=== %s: %s\n' "$name" "$*"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1)); printf '=== %s: ok (%ss)\nPASS %s\n' "$name" $((SECONDS - t0)) "$name"
    else
        failed=$((failed + 1)); failed_names+=("$name"); printf '=== %s: FAILED (%ss)\nFAIL %s\n' "$name" $((SECONDS - t0)) "$name"
    fi
    timings+=("$(printf '%-22s %5ss' "$name" $((SECONDS - t0)))")
}
# One #[ignore]d test of the seL4 stage, with its output shown.
ignored() {
    local package=$1 target=$2; shift 2
    cargo test --release -p "$package" --test "$target" -- --ignored --nocapture --test-threads=1 "$@"
}

stage fmt bash -c 'cargo fmt --all --check && (cd fuzz && cargo fmt --check)'
stage clippy cargo clippy --workspace --all-targets --release -- -D warnings
# The seL4 side: every no_std crate and PD for aarch64-unknown-none.
stage clippy-aarch64 cargo clippy --target aarch64-unknown-none --release \
    -p sddf -p netvm-api -p pd-support -p microkit -p net-client -p node-msg -p virt-rx -p virt-tx -p copier -p echo-server -p echo-api -p timer -p idle -p vmm -p vmm-api -- -D warnings
# Issue #16's size rules: files <= 800 lines, non-test functions <= 100 lines.
stage sizes bash scripts/check-size.sh
stage doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
stage test cargo test --workspace --release --no-fail-fast
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
# The setup scripts' own errors (a missing SDK is one clear sentence).
stage setup-errors bash scripts/tests/sdk.sh
# netvm lan (issue #20): three host-mode systems on a VDE switch, two on the bridge fallback.
stage lan ignored netvm lan

# The real target: Microkit 2.3.0 images on QEMU aarch64 (TCG).
if [ $sel4 -eq 1 ]; then
    stage c_layout ignored sddf c_layout
    stage hello-pds-debug ignored hello-pds sel4_qemu --exact debug_system_prints_every_step_on_sel4
    stage hello-pds-release ignored hello-pds sel4_qemu --exact release_system_runs_silently_on_sel4
    stage hello-pds-benchmark ignored hello-pds sel4_qemu --exact benchmark_system_runs_silently_on_sel4
    # The whole system.xml image (builds the guest into build/guest, which sel4_boot boots).
    stage sel4_system env MICROKIT_CONFIG=release bash -c \
        'cargo test --release -p pipeline-tests --test sel4_system -- --ignored --nocapture --test-threads=1'
    stage sel4_boot ignored vmm sel4_boot
    # The main job (scripts/run.sh) with one short UDP and TCP point: seL4 image vs Linux alone.
    stage sel4-demo ignored netvm sel4_demo
    # The system with 64-entry queues (BUFFERS) end to end: echo on both clients.
    stage sel4_queues64 ignored pipeline-tests sel4_queues64
    # The driver VM crashed three times under UDP and TCP echo traffic (debug image).
    stage sel4_restart bash -c \
        'cargo test --release -p pipeline-tests --test sel4_restart -- --ignored --nocapture --test-threads=1'
    # netvm lan --sel4 --in-system: two seL4 images, each with its driver VM, on one VDE switch;
    # each node's clients reach the other node and each other (local delivery).
    stage sel4_lan ignored pipeline-tests sel4_lan
fi

printf '\n--- time per stage\n'
printf '%s\n' "${timings[@]}"
printf '\n--- skipped tests (target/skipped.log)\n'
if [ -s "$NETVM_SKIP_LOG" ]; then
    sort -u "$NETVM_SKIP_LOG" | sed 's/^/NOT TESTED: /'
    [ $allow_skip -eq 1 ] || printf '(each of these failed its test: NETVM_NO_SKIP is set)\n'
else
    printf 'none\n'
fi
if [ $sel4 -eq 0 ]; then
    printf '\nNOT TESTED: the seL4 stage (--no-sel4): c_layout, hello-pds on QEMU in debug/release/benchmark, sel4_system, sel4_boot, sel4-demo, sel4_queues64, sel4_restart, sel4_lan.\n'
    printf 'NOT TESTED: nothing of the real target (Microkit image on QEMU) was run.\n'
fi
printf '\n'
[ ${#failed_names[@]} -eq 0 ] || printf 'failed stages: %s\n' "${failed_names[*]}"
printf 'stages: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
