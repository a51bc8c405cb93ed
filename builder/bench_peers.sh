#!/usr/bin/env bash
# bench_peers.sh: how long a cold node takes to rebuild hello/o3 from its
# lock with no mirror at all — every source file and image .deb fetched
# from one peer over /lebowski/blob/1 — compared, in the same run, with a
# cold node that fetches from the Debian mirror.
#
#   builder/bench_peers.sh            # from the repository root, as root
#
# Node A builds hello/o3 first (mirror; its cache then holds every input);
# node P (peers only: its mirror is a closed port) and node M (mirror) then
# start from empty data dirs and caches. Each time is from the daemon's
# start to its own signed claim. Needs bin/ (./just build).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LEBOWSKI_BIN:-$PWD/bin}
WORK=$(mktemp -d /tmp/lebowski-bench-peers.XXXXXX)
export LEBOWSKI_OPINIONS=$PWD/opinions
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name port extra-args…
	local n=$1 port=$2
	shift 2
	mkdir -p "$WORK/$n"
	"$BIN/lebowskid" --data-dir "$WORK/$n" --listen "/ip4/127.0.0.1/tcp/$port" --no-mdns --subscribe hello/o3 "$@" >"$WORK/$n.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 100); do
		[ -S "$WORK/$n/lebowskid.sock" ] && return 0
		sleep 0.2
	done
	echo "$n did not start"; tail "$WORK/$n.log"; exit 3
}

# wait_claim name: seconds until the node holds its own claim.
wait_claim() {
	local n=$1 t0 fpr
	t0=$(date +%s)
	fpr=$("$BIN/lebowski" --data-dir "$WORK/$n" --json status | jq -r .builder)
	for _ in $(seq 1 3600); do
		if "$BIN/lebowski" --data-dir "$WORK/$n" --json claims list hello 2>/dev/null | jq -e --arg f "$fpr" 'any(.[]; .builder == $f and .result == "success")' >/dev/null; then
			echo $(( $(date +%s) - t0 ))
			return 0
		fi
		sleep 1
	done
	echo "timeout"; tail -20 "$WORK/$n.log" >&2
	return 1
}

echo "== node A: builds hello/o3 from the mirror (its cache then holds every locked input)"
start A 4301
echo "A: $(wait_claim A) s"
BOOT=$("$BIN/lebowski" --data-dir "$WORK/A" --json status | jq -r '.addrs[0]')

echo "== node P: empty cache, no mirror (closed port), peer A only"
start P 4302 --bootstrap "$BOOT" --mirror http://127.0.0.1:9/debian
P=$(wait_claim P)
echo "P (peers only): $P s"
grep -c 'from=peer' "$WORK/P.log" | sed 's/^/P: files fetched from the peer: /'
grep -c 'from=mirror' "$WORK/P.log" | sed 's/^/P: files fetched from the mirror: /' || true

echo "== node M: empty cache, the Debian mirror"
start M 4303 --bootstrap "$BOOT"
M=$(wait_claim M)
echo "M (mirror): $M s"

for n in A P M; do
	"$BIN/lebowski" --data-dir "$WORK/$n" --json claims list hello | jq -r '.[] | .recipe_id' | sort -u | sed "s/^/$n recipe: /"
done
echo "cold rebuild of hello/o3: peers only ${P}s, mirror ${M}s"
