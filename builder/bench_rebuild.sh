#!/bin/sh
# bench_rebuild.sh: wall time of a vanilla hello 2.10-3 rebuild in the
# Lebowski build container vs a bare `dpkg-buildpackage -b` on the host at
# the same path (/build/hello-2.10-3), same environment, and whether the
# .debs are equal. Run as root on Debian 12 from the repository root or
# anywhere: builder/bench_rebuild.sh [iterations]
# Installs the host build deps (build-essential debhelper help2man texinfo).
set -eu
N=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
TAGS="remote exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper containers_image_openpgp"
export LEBOWSKI_DEV_DIR=${LEBOWSKI_DEV_DIR:-/var/lib/lebowski-dev}

echo "== container: $N rebuild(s), image cached in $LEBOWSKI_DEV_DIR"
(cd "$repo" && LEBOWSKI_E2E=1 go test -tags "$TAGS" -run '^$' -bench BenchmarkRebuildHello -benchtime "${N}x" -timeout 60m -v ./builder/) |
	grep -E 'Benchmark|\.deb' | tee /tmp/lebowski-bench-container.txt

echo "== host: bare dpkg-buildpackage -b at /build/hello-2.10-3"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential debhelper help2man texinfo dh-strip-nondeterminism >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'deb-src http://deb.debian.org/debian bookworm main\n' >"$tmp/sources.list"
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
aptopts="-o Dir::Etc::SourceList=$tmp/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$tmp/lists -o Dir::Cache=$tmp/cache"
# shellcheck disable=SC2086
apt-get -qq $aptopts update
# shellcheck disable=SC2086
(cd "$tmp" && apt-get -qq $aptopts source --download-only hello=2.10-3 >/dev/null 2>&1)
if [ -e /build ] && [ ! -e /build/.lebowski-bench ]; then
	echo "/build exists and is not ours; refusing to use it" >&2
	exit 1
fi
mkdir -p /build && touch /build/.lebowski-bench
total=0
i=0
while [ "$i" -lt "$N" ]; do
	rm -rf /build/hello-2.10-3 /build/*.deb /build/*.buildinfo /build/*.changes
	dpkg-source -x "$tmp/hello_2.10-3.dsc" /build/hello-2.10-3 >/dev/null
	start=$(date +%s.%N)
	(cd /build/hello-2.10-3 && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 LC_ALL=C.UTF-8 TZ=UTC HOME=/tmp \
		DEB_BUILD_OPTIONS=parallel=1 sh -c 'umask 0022; dpkg-buildpackage -b -uc -us' >"$tmp/host.log" 2>&1)
	end=$(date +%s.%N)
	t=$(awk -v s="$start" -v e="$end" 'BEGIN{printf "%.2f", e-s}')
	echo "host build $i: ${t}s"
	total=$(awk -v a="$total" -v b="$t" 'BEGIN{printf "%.2f", a+b}')
	i=$((i + 1))
done
echo "host mean: $(awk -v a="$total" -v n="$N" 'BEGIN{printf "%.2f", a/n}')s"
sha256sum /build/*.deb | sed 's#/build/##' | tee /tmp/lebowski-bench-host.txt
echo "== equal?"
for f in $(awk '{print $2}' /tmp/lebowski-bench-host.txt); do
	h=$(awk -v f="$f" '$2==f{print $1}' /tmp/lebowski-bench-host.txt)
	if grep -q "$h $f" /tmp/lebowski-bench-container.txt; then echo "same   $f"; else echo "DIFFER $f"; fi
done
rm -rf /build/hello-2.10-3 /build/*.deb /build/*.buildinfo /build/*.changes /build/.lebowski-bench
rmdir /build 2>/dev/null || true
