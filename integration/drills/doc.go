// Package drills holds the hardening drills of docs/SECURITY.md that run
// the real binaries: lebowskid processes in network namespaces joined by a
// bridge (partition and heal, kill -9 during ingest) and the lebowski CLI
// against hostile input (Sybil floods, future claims, malicious opinions).
//
// The drills build bin/lebowski and bin/lebowskid into a temporary
// directory and run only with LEBOWSKI_DRILL=1; the network-namespace
// drills also need root and a working `ip netns`:
//
//	LEBOWSKI_DRILL=1 go test -count=1 -v -timeout 15m ./integration/drills/
package drills
