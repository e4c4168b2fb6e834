#!/usr/bin/env bash
# Builds the root filesystem of the omoi-sandbox base image and writes it as a tarball for
# `docker import`: debootstrap's minbase variant plus the packages listed in `packages`, brought up
# to date from the suite's security and updates archives, then pruned of what a sandbox never reads.
# Everything that defines the result is in this file, `packages` and the arguments;
# scripts/build-images.sh hashes exactly those to decide whether the base image must be rebuilt.
#
# Usage: rootfs.sh SUITE MIRROR SECURITY_MIRROR PACKAGES_FILE OUT_TAR [DEB_CACHE_DIR]
# Needs root (debootstrap and chroot). Progress goes to stderr; nothing is printed on stdout.
set -euo pipefail

if [ "$#" -lt 5 ] || [ "$#" -gt 6 ]; then
  echo "usage: $0 SUITE MIRROR SECURITY_MIRROR PACKAGES_FILE OUT_TAR [DEB_CACHE_DIR]" >&2
  exit 2
fi
suite=$1 mirror=$2 security_mirror=$3 packages_file=$4 out=$5 deb_cache=${6:-}

if [ "$(id -u)" -ne 0 ]; then
  echo "rootfs: debootstrap needs root; run this as root (or through sudo)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "rootfs: installing debootstrap" >&2
  apt-get update -qq >&2 && apt-get install -y -qq debootstrap >&2
fi

# The package list: one name per line, `#` comments and blank lines ignored.
packages=$(sed -e 's/#.*//' "$packages_file" | tr -s '[:space:]' '\n' | sed -e '/^$/d')
for name in $packages; do
  if ! [[ $name =~ ^[a-z0-9][a-z0-9+.-]+$ ]]; then
    echo "rootfs: $packages_file: '$name' is not a Debian package name" >&2
    exit 1
  fi
done
include=$(paste -sd, - <<<"$packages")

work=$(mktemp -d "${TMPDIR:-/tmp}/omoi-rootfs.XXXXXX")
root="$work/root"
cleanup() {
  # debootstrap and the chroot steps mount /proc and friends inside the tree: unmount whatever is
  # still mounted there (deepest first) and never delete across a file system boundary.
  awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts |
    sort -r | while read -r mounted; do umount -l "$mounted" || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "rootfs: debootstrap --variant=minbase $suite (+ $include) from $mirror" >&2
cache_args=()
if [ -n "$deb_cache" ]; then
  mkdir -p "$deb_cache"
  cache_args=(--cache-dir="$(cd "$deb_cache" && pwd)")
fi
debootstrap --variant=minbase --components=main --include="$include" "${cache_args[@]}" \
  "$suite" "$root" "$mirror" >&2

# Package configuration that stays in the image, so that what users install later stays small too.
cat >"$root/etc/dpkg/dpkg.cfg.d/omoi-slim" <<'EOF'
# Keep the image small: no manuals, documentation or translations (copyright notices stay).
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
cat >"$root/etc/apt/apt.conf.d/90omoi-slim" <<'EOF'
// Keep the image small: no translations, no recommended extras, no binary package caches.
Acquire::Languages "none";
APT::Install-Recommends "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF

echo "rootfs: applying $suite-updates and $suite-security" >&2
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
in_root apt-get update -qq >&2
in_root apt-get upgrade -y -qq -o Dpkg::Options::=--force-confold >&2
in_root apt-get clean >&2
umount "$root/proc"
rm -f "$root/usr/sbin/policy-rc.d"

echo "rootfs: pruning" >&2
# What a sandbox never reads. dpkg keeps its records, so `apt-get install --reinstall` restores any
# of it and later installs work as usual.
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/{man,info,locale,lintian}/* \
  "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
  "$root"/var/lib/dpkg/*-old "$root"/var/cache/ldconfig/aux-cache "$root"/var/log/*
# glibc converts UTF-8, UTF-16/32, UCS-2/4, ASCII and Latin-1 without loadable modules.
rm -rf "$root"/usr/lib/*-linux-gnu/gconv
# git's servers and mail tools (2 MiB each, not hard links): a sandbox clones, commits and pushes.
rm -f "$root"/usr/lib/git-core/{git-daemon,git-http-backend,git-http-push,git-imap-send,git-shell,scalar} \
  "$root"/usr/bin/{git-shell,scalar}
# C headers for building Perl extensions; there is no compiler in the image.
rm -f "$root"/usr/lib/*-linux-gnu/perl/5.*/CORE/*.h

# Host identity that debootstrap copied in; Docker provides its own at run time.
: >"$root/etc/resolv.conf"
echo localhost >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

mkdir -p "$(dirname "$out")"
tar --numeric-owner --sort=name -C "$root" -cf "$out.partial" .
mv "$out.partial" "$out"
echo "rootfs: wrote $out ($(du -m "$out" | cut -f1) MiB)" >&2
