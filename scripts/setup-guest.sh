#!/usr/bin/env bash
# Installs what `guest-image build` and the guest smoke test need on a fresh Debian bookworm (amd64) machine:
#   qemu-system-aarch64  from bookworm-backports: the machine image's qemu-utils comes from backports and
#                        Breaks bookworm's own qemu-system-common 7.2 (reference/guest-linux.md §5.1)
#   aarch64-linux-gnu-gcc-12 (gcc-aarch64-linux-gnu) and make: cross-build uio_pdrv_genirq.ko against
#                        Debian's arm64 headers
#   xz-utils             tar -J, to take one file out of linux-source-<ver>.tar.xz
# Debian's arm64 kernel and header packages are not installed: `guest-image build` downloads them into a
# private apt state (the host's dpkg architectures are left alone).
# Idempotent: nothing is installed or written when everything is present. Run as root or with sudo.
set -euo pipefail

log() { printf '[setup-guest] %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# Debian packages from the release itself: name:file that proves it is installed.
APT_PACKAGES=(
    "gcc-aarch64-linux-gnu:/usr/bin/aarch64-linux-gnu-gcc-12"
    "make:/usr/bin/make"
    "xz-utils:/usr/bin/xz"
)
missing=()
for entry in "${APT_PACKAGES[@]}"; do
    pkg=${entry%%:*}; probe=${entry#*:}
    [ -e "$probe" ] || missing+=("$pkg")
done
need_qemu=0
command -v qemu-system-aarch64 >/dev/null 2>&1 || need_qemu=1

if [ ${#missing[@]} -eq 0 ] && [ $need_qemu -eq 0 ]; then
    log "ready (nothing to install)"
    exit 0
fi

if [ $need_qemu -eq 1 ]; then
    # Add bookworm-backports with the same mirror and keyring as the machine's own Debian source,
    # unless some source already lists it.
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        src=/etc/apt/sources.list.d/debian.sources
        uri=""; keyring=""
        if [ -f "$src" ]; then
            # First stanza whose Suites has "bookworm": its URIs and Signed-By.
            read -r uri keyring < <(awk '
                BEGIN { RS = ""; FS = "\n" }
                {
                    u = ""; k = ""; ok = 0
                    for (i = 1; i <= NF; i++) {
                        n = split($i, w, /[ \t]+/)
                        if (w[1] == "Suites:") for (j = 2; j <= n; j++) if (w[j] == "bookworm") ok = 1
                        if (w[1] == "URIs:") u = w[2]
                        if (w[1] == "Signed-By:") k = w[2]
                    }
                    if (ok && u != "") { print u, k; exit }
                }' "$src") || true
        fi
        if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
            uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
        fi
        if [ -z "$uri" ]; then
            log "error: no Debian bookworm source found in $src or /etc/apt/sources.list;"
            log "       add a bookworm-backports source by hand, then run this script again"
            exit 1
        fi
        [ -n "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        log "adding bookworm-backports ($uri) as /etc/apt/sources.list.d/bookworm-backports.sources"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
            "$uri" "$keyring" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    fi
fi

$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ $need_qemu -eq 1 ]; then
    log "apt-get install -t bookworm-backports qemu-system-arm"
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-arm >/dev/null
fi
command -v qemu-system-aarch64 >/dev/null || { log "error: qemu-system-aarch64 still missing"; exit 1; }
log "ready"
