#!/usr/bin/env bash
# The main job (./just demo): three lebowskid nodes on loopback, each with
# its own data dir, builder key and cache (no shared sources or images),
# trusting each other, all subscribed to hello/o3. Each fetches the inputs
# hello/o3.lock pins by sha256, makes the build image from exactly those
# .debs, rebuilds hello under -O3 in podman and gossips its signed claim;
# the three independent images and builds agree; then node 1 shows the
# consensus, verifies the built .deb (SAFE TO INSTALL) and a tampered copy
# (DO NOT INSTALL); a fourth node that builds nothing fetches the .deb
# from its peers by hash into its apt repository, and apt in a Debian 12
# container with Lebowski's hook installs it from there, refuses a
# tampered rebuild and an unverified version, and installs a plain package.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${LEBOWSKI_BIN:-$ROOT/bin}
WORK=${LEBOWSKI_DEMO_DIR:-$ROOT/.data/demo}
TIMEOUT=${LEBOWSKI_DEMO_TIMEOUT:-1200}
# LEBOWSKI_DEMO_CACHE: one cache for every node (the e2e test passes the
# test cache, so images made by earlier tests are reused; image
# independence is tested by builder's TestE2ELockedImageIndependent).
# Unset (./just demo): each node fetches and makes everything itself.
SHARED_CACHE=${LEBOWSKI_DEMO_CACHE:-}
export LEBOWSKI_OPINIONS=$ROOT/opinions
T0=$(date +%s)

bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
lb() { local n=$1; shift; "$BIN/lebowski" --data-dir "$WORK/node$n" "$@"; }
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ -n "$SHARED_CACHE" ]; then CACHES="sharing the cache $SHARED_CACHE"; else CACHES="each with its own cache"; fi
bold "1/9 fresh node directories in $WORK, $CACHES"
rm -rf "$WORK"/node1 "$WORK"/node2 "$WORK"/node3
declare -a FPR
for i in 1 2 3; do
	mkdir -p "$WORK/node$i"
	lb "$i" key gen --name "demo node $i" >/dev/null
	FPR[$i]=$(lb "$i" --json key export | jq -r .fingerprint)
	echo "node$i builder key ${FPR[$i]}"
done

bold "2/9 the recipe: opinion hello/o3 and its lock (source and image .debs pinned by sha256)"
lb 1 opinion lint "$ROOT/opinions/hello/o3.yaml"
lb 1 opinion show hello/o3

start_node() {
	local i=$1 port=$2; shift 2
	local subscribe=${SUBSCRIBE-"[hello/o3]"} repo=${REPO:-}
	# Each node trusts the two others: written to its config so the CLI
	# (with or without the daemon) sees the same trust.
	{
		echo "listen: [/ip4/127.0.0.1/tcp/$port]"
		echo "mdns: false"
		echo "subscribe: $subscribe"
		echo "sync_interval: 10s"
		if [ -n "$repo" ]; then echo "repo: {addr: $repo}"; fi
		if [ -n "$SHARED_CACHE" ]; then echo "cache_dir: $SHARED_CACHE"; fi
		echo "trusted_keys:"
		for j in 1 2 3; do [ "$j" = "$i" ] || echo "  - ${FPR[$j]}"; done
	} >"$WORK/node$i/config.yaml"
	"$BIN/lebowskid" --data-dir "$WORK/node$i" "$@" >"$WORK/node$i.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 100); do
		[ -S "$WORK/node$i/lebowskid.sock" ] && lb "$i" --json peers >/dev/null 2>&1 && return 0
		kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "node$i died:"; tail -20 "$WORK/node$i.log"; exit 3; }
		sleep 0.2
	done
	echo "node$i did not start"; tail -20 "$WORK/node$i.log"; exit 3
}

bold "3/9 starting 3 daemons on 127.0.0.1 (logs: $WORK/node*.log)"
REPO=127.0.0.1:9465 start_node 1 4101
BOOT=$(lb 1 --json peers | jq -r '.self.addrs[0]')
echo "node1 is $BOOT"
start_node 2 4102 --bootstrap "$BOOT"
start_node 3 4103 --bootstrap "$BOOT"
sleep 2
lb 1 peers

bold "4/9 each node fetches the locked inputs into its own cache, makes its own image, rebuilds hello 2.10-3 under o3 in podman (--network=none) and gossips its claim"
deadline=$(( $(date +%s) + TIMEOUT ))
last=""
while :; do
	agree=$(lb 1 --json info hello --opinion o3 2>/dev/null | jq '[.recipes[0].report.consensus.trusted // [] | length] | .[0]' 2>/dev/null || echo 0)
	claims=$(lb 1 --json claims list hello 2>/dev/null | jq 'length' 2>/dev/null || echo 0)
	msg="node1 holds $claims claims; $agree/3 builders agree"
	[ "$msg" != "$last" ] && echo "[$(elapsed)] $msg" && last=$msg
	[ "${agree:-0}" -ge 3 ] && break
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "timed out waiting for 3/3 consensus"; for i in 1 2 3; do echo "--- node$i"; tail -15 "$WORK/node$i.log"; done; exit 1
	fi
	for i in 1 2 3; do kill -0 "${PIDS[$((i-1))]}" 2>/dev/null || { echo "node$i died"; tail -20 "$WORK/node$i.log"; exit 3; }; done
	sleep 3
done

bold "5/9 lebowski info hello (node 1's own view, from all peers' claims)"
lb 1 info hello --opinion o3
echo "image digests the three nodes made independently (from their claims):"
for i in 1 2 3; do
	lb "$i" --json claims list hello | jq -r --arg f "${FPR[$i]}" '.[] | select(.builder == $f) | .recipe_id' | head -1 | while read -r rid; do
		lb "$i" --json info hello --opinion o3 | jq -r --arg r "$rid" --arg n "$i" '.recipes[] | select(.recipe.recipe_id == $r) | "  node\($n): \(.recipe.container_digest)"'
	done
done

DEB=$(find "$WORK/node1/builder/builds" -name 'hello_2.10-3~o3+1_amd64.deb' | head -1)
bold "6/9 lebowski verify $(basename "$DEB")"
lb 1 verify "$DEB"

bold "7/9 the same file with one byte flipped"
BAD=$WORK/tampered_$(basename "$DEB")
cp "$DEB" "$BAD"
size=$(stat -c %s "$BAD")
off=$(( size / 2 ))
orig=$(dd if="$BAD" bs=1 skip="$off" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
printf "$(printf '\\%03o' $(( (orig + 1) % 256 )))" | dd of="$BAD" bs=1 seek="$off" count=1 conv=notrunc 2>/dev/null
set +e
lb 1 verify "$BAD"
rc=$?
set -e
if [ "$rc" -ne 1 ]; then echo "expected exit 1 (DO NOT INSTALL) for the tampered file, got $rc"; exit 1; fi
echo "node 2 and node 3 now show node 1's red flag:"
for i in 2 3; do
	for _ in $(seq 1 50); do lb "$i" info hello --opinion o3 | grep -q '^Red flags' && break; sleep 0.2; done
	lb "$i" info hello --opinion o3 | grep -A1 '^Red flags' | sed "s/^/  node$i: /"
done

bold "8/9 node 4 builds nothing: it fetches the agreed .deb from its peers by hash into its own apt repository"
rm -rf "$WORK/node4"
mkdir -p "$WORK/node4"
lb 4 key gen --name "demo node 4" >/dev/null
SUBSCRIBE="[]" REPO=127.0.0.1:9466 start_node 4 4104 --bootstrap "$BOOT" --no-build
lb 4 fetch hello/o3
lb 4 apt-source
lb 4 apt-source --key >"$WORK/lebowski.asc"

bold "9/9 apt in a Debian 12 container, with Lebowski's hook asking node 4 (.ci/apt-in-container.sh)"
IMAGE=$(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/lebowski/bookworm-hello:' | head -1)
echo "container: $IMAGE (a hello build image: Debian 12 with apt)"
CONTAINERS_CONF=$ROOT/builder/containers.conf podman run --rm --network=host \
	-v "$BIN:/opt/lebowski:ro" -v "$WORK/node4:/node" -v "$WORK:/work:ro" -v "$ROOT/.ci/apt-in-container.sh:/apt-in-container.sh:ro" \
	-e REPO=127.0.0.1:9466 "$IMAGE" bash /apt-in-container.sh

bold "stopping daemons"
cleanup
PIDS=()
trap - EXIT

bold "summary ($(elapsed))"
echo "3 nodes ($CACHES; images from the lock) rebuilt hello 2.10-3~o3+1 in podman and agreed on:"
lb 1 --json info hello --opinion o3 | jq -r '.recipes[0].report.consensus.artifacts[] | "  \(.sha256)  \(.name)"'
echo "verify of the built .deb: SAFE TO INSTALL (exit 0); of a one-byte-tampered copy: DO NOT INSTALL (exit 1)"
echo "node 4 fetched the .deb from its peers by hash and served it; apt installed it from there, refused a tampered rebuild and an unverified version"
