#!/usr/bin/env bash
# Finds the Microkit 2.3.0 SDK and sDDF 0.7.0's headers, the two inputs no package registry
# carries, and writes where they are to .cache/sdk.env (sourced by scripts/test.sh and
# scripts/run.sh; `make` takes MICROKIT_SDK from there too).
#
# The SDK, in this order:
#   1. MICROKIT_SDK, if set (checked, used as it is);
#   2. microkit-sdk-2.3.0-linux-x86-64.tar.gz in the download cache: NETVM_DOWNLOADS if set,
#      else ../shared/downloads if that folder exists;
#   3. the official Microkit 2.3.0 release archive from github.com/seL4/microkit.
# Archives are unpacked once into .cache/sdk/ (ignored by git), never into the repository.
# sDDF's headers likewise: SDDF_INCLUDE if set; else sddf-0.7.0-include.tar.gz from the download
# cache; else the source archive of sDDF's 0.7.0 tag from github.com/au-ts/sddf.
#
# On failure it prints one sentence saying what is missing and how to provide it, and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

MICROKIT_VERSION=2.3.0
BOARD=qemu_virt_aarch64
CONFIGS=(debug release benchmark)
SDK_ARCHIVE=microkit-sdk-$MICROKIT_VERSION-linux-x86-64.tar.gz
SDK_URL=https://github.com/seL4/microkit/releases/download/$MICROKIT_VERSION/$SDK_ARCHIVE
SDDF_VERSION=0.7.0
SDDF_ARCHIVE=sddf-$SDDF_VERSION-include.tar.gz
SDDF_URL=https://github.com/au-ts/sddf/archive/refs/tags/$SDDF_VERSION.tar.gz
CACHE=$PWD/.cache/sdk

log() { printf '[sdk] %s\n' "$*" >&2; }
die() { printf '[sdk] error: %s\n' "$*" >&2; exit 1; }

# The download cache: NETVM_DOWNLOADS, else ../shared/downloads when it exists.
downloads=""
if [ -n "${NETVM_DOWNLOADS:-}" ]; then
    [ -d "$NETVM_DOWNLOADS" ] || die "NETVM_DOWNLOADS=$NETVM_DOWNLOADS is not a folder"
    downloads=$(cd "$NETVM_DOWNLOADS" && pwd)
elif [ -d ../shared/downloads ]; then
    downloads=$(cd ../shared/downloads && pwd)
fi

# Checks an SDK folder; prints nothing and succeeds when it is a Microkit 2.3.0 SDK with the
# board and configs the project needs, else prints why not.
check_sdk() {
    local sdk=$1
    [ -x "$sdk/bin/microkit" ] || { echo "$sdk has no bin/microkit"; return 1; }
    local version
    version=$(cat "$sdk/VERSION" 2>/dev/null || echo "no VERSION file")
    [ "$version" = "$MICROKIT_VERSION" ] || { echo "$sdk is not Microkit $MICROKIT_VERSION (VERSION: $version)"; return 1; }
    local c
    for c in "${CONFIGS[@]}"; do
        [ -d "$sdk/board/$BOARD/$c" ] || { echo "$sdk has no board $BOARD config $c"; return 1; }
    done
}

check_sddf() {
    local inc=$1
    [ -f "$inc/sddf/network/queue.h" ] || { echo "$inc has no sddf/network/queue.h"; return 1; }
    [ -f "$inc/sddf/network/config.h" ] || { echo "$inc has no sddf/network/config.h"; return 1; }
}

# fetch URL FILE: downloads with a short timeout; fails quietly (the caller says what failed).
fetch() {
    command -v curl >/dev/null 2>&1 || return 1
    curl -fsSL --connect-timeout 15 --max-time 300 -o "$2.part" "$1" 2>/dev/null && mv "$2.part" "$2"
}

# unpack ARCHIVE DIR: into a temporary folder beside DIR, then renamed (an interrupted unpack
# leaves no half folder behind).
unpack() {
    local archive=$1 dest=$2 tmp
    tmp=$(mktemp -d "$CACHE/.unpack.XXXXXX")
    tar -xzf "$archive" -C "$tmp" || { rm -rf "$tmp"; return 1; }
    local top
    top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)
    [ -n "$top" ] || { rm -rf "$tmp"; return 1; }
    rm -rf "$dest"
    mv "$top" "$dest"
    rm -rf "$tmp"
}

mkdir -p "$CACHE"

# --- the Microkit SDK ---
if [ -n "${MICROKIT_SDK:-}" ]; then
    why=$(check_sdk "$MICROKIT_SDK") || die "MICROKIT_SDK=$MICROKIT_SDK cannot be used: $why"
    sdk=$(cd "$MICROKIT_SDK" && pwd)
else
    sdk=$CACHE/microkit-sdk-$MICROKIT_VERSION
    if ! check_sdk "$sdk" >/dev/null; then
        archive=""
        if [ -n "$downloads" ] && [ -f "$downloads/$SDK_ARCHIVE" ]; then
            archive=$downloads/$SDK_ARCHIVE
            log "unpacking $archive"
        else
            archive=$CACHE/$SDK_ARCHIVE
            log "downloading $SDK_URL"
            fetch "$SDK_URL" "$archive" || die "no Microkit $MICROKIT_VERSION SDK: MICROKIT_SDK is unset, no $SDK_ARCHIVE in a download cache (NETVM_DOWNLOADS or ../shared/downloads), and $SDK_URL cannot be downloaded"
        fi
        unpack "$archive" "$sdk" || die "cannot unpack $archive into $sdk"
        why=$(check_sdk "$sdk") || die "the SDK unpacked from $archive cannot be used: $why"
    fi
fi

# --- sDDF's headers ---
if [ -n "${SDDF_INCLUDE:-}" ]; then
    why=$(check_sddf "$SDDF_INCLUDE") || die "SDDF_INCLUDE=$SDDF_INCLUDE cannot be used: $why"
    sddf_include=$(cd "$SDDF_INCLUDE" && pwd)
else
    sddf_include=$CACHE/sddf-$SDDF_VERSION/include
    if ! check_sddf "$sddf_include" >/dev/null; then
        if [ -n "$downloads" ] && [ -f "$downloads/$SDDF_ARCHIVE" ]; then
            archive=$downloads/$SDDF_ARCHIVE
            log "unpacking $archive"
        else
            archive=$CACHE/sddf-$SDDF_VERSION.tar.gz
            log "downloading $SDDF_URL"
            fetch "$SDDF_URL" "$archive" || die "no sDDF $SDDF_VERSION headers: SDDF_INCLUDE is unset, no $SDDF_ARCHIVE in a download cache (NETVM_DOWNLOADS or ../shared/downloads), and $SDDF_URL cannot be downloaded"
        fi
        unpack "$archive" "$CACHE/sddf-$SDDF_VERSION" || die "cannot unpack $archive"
        why=$(check_sddf "$sddf_include") || die "the sDDF headers unpacked from $archive cannot be used: $why"
    fi
fi

printf 'export MICROKIT_SDK=%q\nexport SDDF_INCLUDE=%q\n' "$sdk" "$sddf_include" > .cache/sdk.env
log "MICROKIT_SDK=$sdk"
log "SDDF_INCLUDE=$sddf_include"
