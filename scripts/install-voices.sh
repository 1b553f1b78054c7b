#!/bin/sh
# MBROLA English diphone voices for `avsrctl demo-data --mbrola` (used by `make grid-recipe`).
# They are recordings of real speakers, so a corpus that mixes them with espeak-ng's own voices
# transfers better to real speech. Debian ships them in non-free (Ubuntu: multiverse); on Debian
# this script adds those components in a separate sources file when apt cannot find the packages.
# Licence of the voice databases: free for non-commercial, non-military use.
set -eu
VOICES="en1 us1 us2 us3"
missing=""
for v in $VOICES; do
    [ -e "/usr/share/mbrola/$v/$v" ] || [ -e "/usr/share/mbrola/$v" ] || missing="$missing mbrola-$v"
done
[ -z "$missing" ] && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install the MBROLA voices$missing by hand" >&2; exit 1; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "installing MBROLA voices:$missing"
if $SUDO apt-get install -y -qq mbrola $missing >/dev/null 2>&1; then exit 0; fi
. /etc/os-release
if [ "${ID:-}" = debian ] && [ -n "${VERSION_CODENAME:-}" ]; then
    list=/etc/apt/sources.list.d/avsrctl-mbrola.sources
    echo "adding Debian contrib/non-free for $VERSION_CODENAME in $list"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$VERSION_CODENAME" | $SUDO tee "$list" >/dev/null
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq mbrola $missing >/dev/null
else
    echo "apt could not install mbrola$missing: enable the multiverse (Ubuntu) or non-free (Debian) component" >&2
    exit 1
fi
