#!/usr/bin/env bash
# Tests scripts/sdk.sh against its contract, on copies of the script in scratch projects:
# - no MICROKIT_SDK, no download cache, no download: exit 1 and one clear sentence;
# - MICROKIT_SDK naming something that is not a Microkit 2.3.0 SDK: exit 1, says why;
# - a download cache (NETVM_DOWNLOADS, or ../shared/downloads beside the project): the archives
#   are unpacked into the project's .cache/sdk, checked, and .cache/sdk.env names them; a second
#   run reuses them without unpacking again.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
ok() { printf 'ok: %s\n' "$*"; }

project() { # a fresh project folder with only the script
    local p=$scratch/$1/project
    mkdir -p "$p/scripts"
    cp "$here/scripts/sdk.sh" "$p/scripts/"
    echo "$p"
}
# PATH without curl: a machine that cannot download (this one cannot reach the release page).
nocurl=$scratch/bin
mkdir -p "$nocurl"
for tool in bash env cat tar gzip mkdir mktemp find head rm mv dirname printf grep sed; do
    ln -sf "$(command -v $tool)" "$nocurl/$tool"
done

# 1. Nothing at all.
p=$(project bare)
out=$(env -u MICROKIT_SDK -u SDDF_INCLUDE -u NETVM_DOWNLOADS PATH=$nocurl bash "$p/scripts/sdk.sh" 2>&1)
rc=$?
errors=$(printf '%s\n' "$out" | grep -c 'error')
if [ $rc -eq 1 ] && [ "$errors" -eq 1 ] && printf '%s' "$out" | grep -q 'no Microkit 2.3.0 SDK: MICROKIT_SDK is unset'; then
    ok "no SDK anywhere: one sentence ($out)"
else
    fail "no SDK anywhere: rc=$rc, $errors error lines: $out"
fi

# 2. MICROKIT_SDK that is not the SDK.
p=$(project wrong)
mkdir -p "$scratch/fake/bin"; printf '1.4.1\n' > "$scratch/fake/VERSION"
printf '#!/bin/sh\n' > "$scratch/fake/bin/microkit"; chmod +x "$scratch/fake/bin/microkit"
out=$(env -u NETVM_DOWNLOADS MICROKIT_SDK="$scratch/fake" PATH=$nocurl bash "$p/scripts/sdk.sh" 2>&1)
rc=$?
if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q 'is not Microkit 2.3.0 (VERSION: 1.4.1)'; then
    ok "wrong MICROKIT_SDK refused ($out)"
else
    fail "wrong MICROKIT_SDK: rc=$rc: $out"
fi

# 3. From the download cache.
downloads=${NETVM_DOWNLOADS:-$here/../shared/downloads}
if [ ! -f "$downloads/microkit-sdk-2.3.0-linux-x86-64.tar.gz" ]; then
    fail "no download cache at $downloads to test unpacking with"
else
    p=$(project cached)
    out=$(env -u MICROKIT_SDK -u SDDF_INCLUDE NETVM_DOWNLOADS="$downloads" PATH=$nocurl bash "$p/scripts/sdk.sh" 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ -f "$p/.cache/sdk.env" ]; then
        # shellcheck disable=SC1091
        ( . "$p/.cache/sdk.env"
          [ "$MICROKIT_SDK" = "$p/.cache/sdk/microkit-sdk-2.3.0" ] && [ -x "$MICROKIT_SDK/bin/microkit" ] \
            && [ -f "$SDDF_INCLUDE/sddf/network/queue.h" ] ) \
            && ok "unpacked from the download cache into .cache/sdk" \
            || fail "sdk.env does not name the unpacked SDK and headers: $(cat "$p/.cache/sdk.env")"
        out2=$(env -u MICROKIT_SDK -u SDDF_INCLUDE NETVM_DOWNLOADS=/nonexistent-but-unused PATH=$nocurl bash "$p/scripts/sdk.sh" 2>&1)
        # NETVM_DOWNLOADS naming no folder is an error even when the cache would serve.
        printf '%s' "$out2" | grep -q 'NETVM_DOWNLOADS=/nonexistent-but-unused is not a folder' \
            && ok "a wrong NETVM_DOWNLOADS is named" || fail "wrong NETVM_DOWNLOADS: $out2"
        out3=$(env -u MICROKIT_SDK -u SDDF_INCLUDE -u NETVM_DOWNLOADS PATH=$nocurl bash "$p/scripts/sdk.sh" 2>&1)
        if [ $? -eq 0 ] && ! printf '%s' "$out3" | grep -q unpacking; then
            ok "second run reuses .cache/sdk"
        else
            fail "second run: $out3"
        fi
    else
        fail "unpacking from the download cache: rc=$rc: $out"
    fi
fi
[ "$failures" -eq 0 ] && echo "sdk.sh: all checks passed" || { echo "sdk.sh: $failures failed"; exit 1; }
