#!/usr/bin/env bash
# Runs INSIDE a Debian 12 container (see .ci/demo.sh, step 9), never on the
# host: it rewrites apt's sources. Expects:
#   /opt/lebowski/lebowski   the CLI
#   /node                    a node's data dir whose lebowskid serves its
#                            apt repository on $REPO (127.0.0.1:9466)
#   /work/lebowski.asc       that repository's signing key
# apt gets Lebowski's hook; then: a SAFE hello installs from the node's
# repository, a tampered rebuild of the same version and an unverified
# version from a file repository are refused, a plain package installs.
set -euo pipefail
if [ ! -e /run/.containerenv ] && [ ! -e /.dockerenv ]; then
	echo "apt-in-container.sh: refusing to run outside a container (it rewrites apt's sources)" >&2
	exit 2
fi
REPO=${REPO:-127.0.0.1:9466}
say() { printf '\n--- %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }

rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
mkdir -p /etc/apt/keyrings
install -m 0644 /work/lebowski.asc /etc/apt/keyrings/lebowski.asc
echo "deb [signed-by=/etc/apt/keyrings/lebowski.asc] http://$REPO lebowski main" >/etc/apt/sources.list.d/lebowski.list
printf '%s\n' \
	'DPkg::Pre-Install-Pkgs {"/opt/lebowski/lebowski --data-dir /node apt-check";};' \
	'DPkg::Tools::Options::/opt/lebowski/lebowski::Version "3";' >/etc/apt/apt.conf.d/80lebowski

say "apt-get install hello from the node's repository (SAFE by consensus)"
apt-get -qq update
apt-get install -y --no-install-recommends hello >/tmp/out 2>&1 || { cat /tmp/out; fail "the SAFE hello was not installed"; }
grep -E 'lebowski|Setting up hello' /tmp/out || true
dpkg-query -W hello
hello
DEB=$(ls /var/cache/apt/archives/hello_*.deb)
mkdir -p /tmp/x /srv/files
dpkg-deb -R "$DEB" /tmp/x

# Rebuild files in /srv/files and index them.
repack() { dpkg-deb --root-owner-group -b "$1" /srv/files/ >/dev/null; (cd /srv/files && dpkg-scanpackages -m . >Packages 2>/dev/null); apt-get -qq update; }

say "a tampered rebuild of the same version, from a file repository"
apt-get remove -y -qq hello >/dev/null
apt-get clean
rm -f /etc/apt/sources.list.d/lebowski.list
echo 'echo pwned' >/tmp/x/usr/share/doc/hello/EVIL
echo "deb [trusted=yes] file:/srv/files ./" >/etc/apt/sources.list.d/files.list
repack /tmp/x
if apt-get install -y --no-install-recommends hello >/tmp/out 2>&1; then cat /tmp/out; fail "the tampered hello was installed"; fi
grep -E 'lebowski|^E:' /tmp/out
[ "$(dpkg-query -W -f='${Status}' hello 2>/dev/null)" = "install ok installed" ] && fail "hello is installed after a refusal"

say "a version nobody rebuilt (2.10-3~o3+2)"
sed -i 's/^Version: .*/Version: 2.10-3~o3+2/' /tmp/x/DEBIAN/control
rm -f /srv/files/*.deb
repack /tmp/x
if apt-get install -y --no-install-recommends hello >/tmp/out 2>&1; then cat /tmp/out; fail "the unverified hello was installed"; fi
grep -E 'lebowski|^E:' /tmp/out

say "a plain (non-Lebowski) package passes"
mkdir -p /tmp/plain/DEBIAN
printf 'Package: lebowski-demo-plain\nVersion: 1.0-1\nArchitecture: all\nMaintainer: demo <demo@example.org>\nDescription: plain package\n' >/tmp/plain/DEBIAN/control
repack /tmp/plain
apt-get install -y --no-install-recommends lebowski-demo-plain >/tmp/out 2>&1 || { cat /tmp/out; fail "the plain package was refused"; }
dpkg-query -W lebowski-demo-plain
echo "APT CHECKS PASSED"
