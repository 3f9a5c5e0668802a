#!/usr/bin/env bash
# The long fuzzing run: every target (or those named after the time) for SECONDS each, keeping
# the corpus it grows in fuzz/corpus/<target>/ (only seed-* files are committed) and any crash
# in fuzz/artifacts/<target>/. Prints each target's final libFuzzer status line (execs, exec/s,
# cov, ft) for FUZZING.md's table and ends with "N passed, N failed".
#   scripts/fuzz-long.sh 600              # ten minutes per target
#   scripts/fuzz-long.sh 3600 pipeline    # one hour of the pipeline target
set -u
cd "$(dirname "$0")/.."
seconds="${1:?usage: scripts/fuzz-long.sh SECONDS_PER_TARGET [TARGET...]}"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/fuzz}"
jobs="${FUZZ_JOBS:-1}"
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
cargo +nightly fuzz build || exit 1
targets="${*:-$(cargo +nightly fuzz list)}"
passed=0
failed=0
mkdir -p fuzz/logs
for t in $targets; do
    log="fuzz/logs/$t.log"
    if cargo +nightly fuzz run "$t" -j"$jobs" -- -max_total_time="$seconds" -rss_limit_mb=4096 \
        -print_final_stats=1 >"$log" 2>&1; then
        echo "PASS $t: $(grep -E '^#[0-9]+.*DONE' "$log" | tail -1)"
        passed=$((passed + 1))
    else
        echo "FAIL $t: see $log and fuzz/artifacts/$t/"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
