#!/usr/bin/env bash
# Runs every cargo-fuzz target briefly (default 10 s each, or $FUZZ_SMOKE_SECONDS) from its seed
# corpus, on a scratch copy so the committed seeds stay as they are. Installs cargo-fuzz if it is
# missing. Exits non-zero if any target fails to build or finds a crash; ends with
# "N passed, N failed". See FUZZING.md.
set -u
cd "$(dirname "$0")/.."
seconds="${FUZZ_SMOKE_SECONDS:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/fuzz}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo +nightly install cargo-fuzz --locked || { echo "0 passed, 1 failed"; exit 1; }
fi

start=$(date +%s)
# The seed generator (examples/seeds.rs) is no fuzz target, so `cargo fuzz build` skips it; check
# it here so it does not rot when the APIs it derives seeds from move.
if ! (cd fuzz && cargo +nightly check --quiet --examples); then
    echo "fuzz-smoke: fuzz/examples do not build"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "fuzz-smoke: building every target (nightly, address sanitizer)"
if ! cargo +nightly fuzz build 2>&1 | tail -3; then
    echo "fuzz-smoke: build failed"
    echo "0 passed, 1 failed"
    exit 1
fi
# `cargo fuzz build` can print errors and still exit 0 through the pipe: check the binaries.
targets=$(cargo +nightly fuzz list)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
for t in $targets; do
    mkdir -p "$work/$t"
    cp fuzz/corpus/"$t"/seed-* "$work/$t/" 2>/dev/null || true
    log="$work/$t.log"
    # -rss_limit_mb: the echo server's socket buffers are ~1 MiB per run; leave room for ASan.
    if cargo +nightly fuzz run "$t" "$work/$t" -- -max_total_time="$seconds" \
        -rss_limit_mb=4096 -artifact_prefix="$work/$t-" >"$log" 2>&1; then
        stats=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1)
        echo "PASS $t: $stats"
        passed=$((passed + 1))
    else
        echo "FAIL $t (last lines of its log follow)"
        tail -40 "$log"
        mkdir -p fuzz/artifacts/"$t"
        cp "$work/$t"-* fuzz/artifacts/"$t"/ 2>/dev/null && echo "  reproducer(s) in fuzz/artifacts/$t/"
        failed=$((failed + 1))
    fi
done
echo "fuzz-smoke: $(( $(date +%s) - start )) s in all"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
