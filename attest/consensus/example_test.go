package consensus_test

import (
	"fmt"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

func Example() {
	now := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	deb := attest.Artifact{Name: "hello_2.10-3~o3+1_amd64.deb", SHA256: "1c3276728101caa3d3c6a5e74ee21fd659e8176f3e985bdc6320d7e574ee2cb8"}
	claim := func(builder, peer string) consensus.Claim {
		s := &attest.Statement{
			Type: attest.TypeRebuildV1, Package: "hello", Version: "2.10-3~o3+1", DebianVersion: "2.10-3",
			Suite: "bookworm", Arch: "amd64", RecipeID: "3f2a…", Result: attest.ResultSuccess,
			Opinion:   attest.OpinionRef{Name: "o3", CID: "bafy…", Purity: vocab.PurityPureCompilation},
			Artifacts: []attest.Artifact{deb}, Builder: builder, PeerID: peer, Timestamp: now.Add(-2 * time.Hour),
		}
		return consensus.Claim{ID: builder, Statement: s, Received: now}
	}
	claims := []consensus.Claim{claim("AAAA", "12D3KooWa"), claim("BBBB", "12D3KooWb"), claim("CCCC", "12D3KooWc"), claim("EEEE", "12D3KooWe")}
	trust := consensus.StaticTrust{Levels: map[string]attest.Trust{
		"AAAA": attest.TrustTrusted, "BBBB": attest.TrustTrusted, "CCCC": attest.TrustTrusted, // EEEE is unvetted
	}}
	opt := consensus.Options{Now: now}

	r := consensus.Evaluate(claims, trust, opt)
	fmt.Println(consensus.Bar(r.Score, 10))
	for _, line := range r.Reasons {
		fmt.Println(line)
	}
	v, _ := r.VerdictFor(deb.SHA256, deb.Name, opt)
	fmt.Println(v)
	// Output:
	// ██████░░░░ 6/10
	// 3 trusted builders agree (3 operators)
	// 1 unvetted key also reports this hash (not counted)
	// newest agreeing claim 2h ago
	// purity pure-compilation
	// score 6.3/10 = 10 × (0.5×volume 0.58 + 0.5×diversity 0.68) × recency 1.00 × purity 1.00 × failures 1.00
	// SAFE TO INSTALL
}
