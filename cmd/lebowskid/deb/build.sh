#!/usr/bin/env bash
# Builds the Debian package of Lebowski itself, reproducibly: the same
# commit gives the same .deb bytes on any machine with the same Go version
# (`./just deb`; docs/INSTALL.md). Usage: build.sh [OUT_DIR] (default bin/).
#
# Reproducible because: static binaries (CGO_ENABLED=0) built with
# -trimpath from the commit (Go's builds are deterministic; the VCS
# revision is embedded, so a modified tree is refused unless
# LEBOWSKI_DEB_DIRTY=1); every file's mtime is the commit time
# (SOURCE_DATE_EPOCH), owners root:root, modes fixed by umask 022;
# dpkg-deb sorts the tar members, clamps their mtimes and the ar header to
# SOURCE_DATE_EPOCH; xz runs single-threaded (its output depends on the
# thread count otherwise).
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root"
out=$(realpath -m "${1:-bin}")
if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${LEBOWSKI_DEB_DIRTY:-}" != 1 ]; then
	echo "deb: the work tree has uncommitted changes; commit them (the package is built from a commit) or set LEBOWSKI_DEB_DIRTY=1 for a non-reproducible test build" >&2
	exit 2
fi
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
rev=$(git rev-parse --short=12 HEAD)
version="0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).$rev"
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/lebowski"

echo "deb: building lebowski $version ($arch) from $rev" >&2
CGO_ENABLED=0 go build -trimpath -o "$pkg/usr/bin/" ./cmd/lebowski ./cmd/lebowskid

install -d "$pkg/lib/systemd/system" "$pkg/usr/share/lebowski/apt" "$pkg/usr/share/doc/lebowski" "$pkg/DEBIAN"
sed -e 's|/usr/local/bin/|/usr/bin/|g' -e 's|/usr/local/share/|/usr/share/|g' \
	-e '/^# systemd unit for lebowskid. Install:/,/^# network and no added capabilities)./c\# systemd unit for lebowskid, installed by the lebowski package (the\n# package runs `lebowskid init`, creates group lebowski and enables it).\n# Rebuilds need podman (rootful: builds run in containers with no network\n# and no added capabilities).' \
	cmd/lebowskid/lebowskid.service >"$pkg/lib/systemd/system/lebowskid.service"
git ls-files -z opinions | xargs -0 -I{} install -D -m 0644 {} "$pkg/usr/share/lebowski/{}"
cat >"$pkg/usr/share/lebowski/apt/80lebowski" <<'EOF'
// Lebowski's apt gate (docs/APT.md): copy to /etc/apt/apt.conf.d/ to make
// apt refuse Lebowski builds the network has not verified. Plain Debian
// packages pass; a Lebowski build passes only when this node's consensus
// says SAFE.
DPkg::Pre-Install-Pkgs {"/usr/bin/lebowski --data-dir /var/lib/lebowski apt-check";};
DPkg::Tools::Options::/usr/bin/lebowski::Version "3";
EOF
for f in README.md docs/*.md; do install -m 0644 "$f" "$pkg/usr/share/doc/lebowski/"; done
cat >"$pkg/usr/share/doc/lebowski/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lebowski
Source: https://github.com/lebowski-dist/lebowski (commit $(git rev-parse HEAD))

Files: *
Copyright: Lebowski contributors
License: see the source repository; Go module dependencies keep their own licenses.
EOF
install -m 0755 cmd/lebowskid/deb/postinst cmd/lebowskid/deb/prerm cmd/lebowskid/deb/postrm "$pkg/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" cmd/lebowskid/deb/control.in >"$pkg/DEBIAN/control"
find "$pkg" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/lebowski_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --threads-max=1 --build "$pkg" "$deb" >/dev/null
echo "$deb"
sha256sum "$deb" >&2
