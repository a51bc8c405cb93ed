package coretest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// testDecide: the one install decision, for each path a file takes
// through it (the consensus, this node's rebuild, an opinion that gives
// another version, damaged and foreign files), with the red flag each
// warrants and only those.
func testDecide(t *testing.T, mk func(*testing.T, func(*config.Config)) *Harness) {
	h := mk(t, nil)
	importTrusted(t, h.API, attesttest.Identities(t, 3))
	info, err := h.API.Info(ctx, core.InfoQuery{Package: "hello"})
	require.NoError(t, err)
	require.Len(t, info.Recipes, 1)
	recipe := info.Recipes[0].Recipe.RecipeID
	good, evil := attesttest.Hex("deb"), attesttest.Hex("evil")
	file := func(sum string, mod ...func(*core.DecideRequest)) core.DecideRequest {
		r := core.DecideRequest{File: "/tmp/" + attesttest.DebName, SHA256: sum, Package: "hello", BinaryPackage: "hello",
			Version: attesttest.BinaryVersion, DebianVersion: attesttest.DebianVersion, FileName: attesttest.DebName,
			Opinion: &core.OpinionFacts{Package: "hello", Name: attesttest.Opinion, BinaryVersion: attesttest.BinaryVersion}}
		for _, m := range mod {
			m(&r)
		}
		return r
	}
	own := func(sum string) func(*core.DecideRequest) {
		return func(r *core.DecideRequest) {
			r.Own = &core.OwnBuild{SHA256: sum, RecipeID: recipe, SourceSHA256: info.Recipes[0].Recipe.SourceSHA256, ImageDigest: info.Recipes[0].Recipe.ImageDigest}
		}
	}
	for _, tc := range []struct {
		desc     string
		req      core.DecideRequest
		want     consensus.Verdict
		expected string
		flag     string // the red flag's expected hash; "" = none
		reason   string // the first reason
		asked    bool   // the consensus was asked
	}{
		{"the agreed hash, consensus only", file(good), consensus.Safe, "", "", "", true},
		{"another hash: the consensus expected other bytes", file(evil), consensus.DoNotInstall, good, good, "", true},
		{"bit-identical to the own rebuild", file(good, own(good)), consensus.Safe, "", "", "bit-identical to this node's own rebuild", true},
		{"differs from the own rebuild", file(evil, own(good)), consensus.DoNotInstall, good, good, "the file differs from this node's own rebuild", true},
		{"the rebuild made no such file", file(good, own("")), consensus.DoNotInstall, "", "", "the rebuild did not produce this file", true},
		{"the opinion gives another version", file(good, func(r *core.DecideRequest) { r.Version = "2.10-3~o3+2" }), consensus.DoNotInstall, "", "", "the file's version does not match the opinion", false},
		{"a vanilla build nobody attests", file(good, func(r *core.DecideRequest) { r.Opinion = nil }), consensus.Unverified, "", "", "", true},
		{"damaged, with its control data", file(evil, func(r *core.DecideRequest) { r.Problem, r.Damaged = "truncated data.tar", true }), consensus.DoNotInstall, good, good, attesttest.DebName + ": truncated data.tar", true},
		{"foreign: no red flag", core.DecideRequest{File: "x.deb", SHA256: good, Problem: "built for arm64"}, consensus.DoNotInstall, "", "", "x.deb: built for arm64", true},
		{"unreadable: nothing to ask", core.DecideRequest{File: "x.deb", Problem: "permission denied", Damaged: true}, consensus.DoNotInstall, "", "", "x.deb: permission denied", false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			d, err := h.API.Decide(ctx, tc.req)
			require.NoError(t, err)
			assert.Equal(t, tc.want, d.Verdict, "%v", d.Reasons)
			assert.Equal(t, tc.expected, d.Expected)
			require.NotEmpty(t, d.Reasons)
			if tc.reason != "" {
				assert.Equal(t, tc.reason, d.Reasons[0])
			}
			assert.Equal(t, tc.asked, d.Consensus != nil, "consensus asked")
			require.NotEmpty(t, d.Checks)
			if tc.flag == "" {
				assert.Nil(t, d.RedFlag, "no red flag")
				return
			}
			require.NotNil(t, d.RedFlag, "a red flag")
			assert.Equal(t, recipe, d.RedFlag.RecipeID)
			assert.Equal(t, tc.flag, d.RedFlag.Expected)
			assert.Equal(t, tc.req.SHA256, d.RedFlag.Observed)
			assert.Equal(t, attesttest.DebName, d.RedFlag.File)
		})
	}
	// Bad input is refused, never half-decided.
	for _, req := range []core.DecideRequest{
		file(""),              // a readable file without its hash
		file("NOT-HEX"),       // a hash that is none
		file(good[:63] + "G"), // one bad digit
	} {
		_, err := h.API.Decide(ctx, req)
		require.ErrorIs(t, err, core.ErrInvalid, "sha256 %q", req.SHA256)
	}
}
