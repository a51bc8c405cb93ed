package consensus

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

func TestComponentFunctions(t *testing.T) {
	tests := []struct {
		desc string
		got  float64
		want float64
	}{
		{"volume of 0 builders is 0", volume(0), 0},
		{"volume of 1 builder is low", volume(1), math.Log(2) / math.Log(11)},
		{"volume of 5 builders is medium", volume(5), math.Log(6) / math.Log(11)},
		{"volume saturates at 10", volume(10), 1},
		{"volume stays 1 above 10", volume(1000), 1},
		{"one operator gives no diversity", diversity(1), 0},
		{"no operator gives no diversity", diversity(0), 0},
		{"two operators", diversity(2), math.Log(2) / math.Log(5)},
		{"diversity saturates at 5 operators", diversity(5), 1},
		{"diversity stays 1 above 5", diversity(50), 1},
		{"fresh claim has full recency", recency(time.Hour, true), 1},
		{"claim from the future counts as fresh", recency(-time.Hour, true), 1},
		{"recency full at the grace limit", recency(RecencyGrace, true), 1},
		{"recency halfway between grace and horizon", recency((RecencyGrace+RecencyHorizon)/2, true), (1 + RecencyFloor) / 2},
		{"recency at the horizon is the floor", recency(RecencyHorizon, true), RecencyFloor},
		{"recency after the horizon is the floor", recency(10*RecencyHorizon, true), RecencyFloor},
		{"unknown age counts at the floor", recency(0, false), RecencyFloor},
		{"pure compilation", purityFactor(vocab.PurityPureCompilation, false), 1},
		{"configure-only", purityFactor(vocab.PurityConfigureOnly, false), 0.9},
		{"patches", purityFactor(vocab.PurityPatches, false), 0.75},
		{"undeclared counts as patches", purityFactor("", false), 0.75},
		{"vanilla counts as pure", purityFactor("", true), 1},
		{"no failures", failures(3, 0), 1},
		{"one failure among four", failures(3, 1), 1 - 0.3/4},
		{"only failures", failures(0, 5), 0.7},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			assert.InDelta(t, tc.want, tc.got, 1e-12)
		})
	}
}

func TestScoreTable(t *testing.T) {
	patches := world{purity: vocab.PurityPatches}
	configure := world{purity: vocab.PurityConfigureOnly}
	undeclared := world{}
	vanilla := world{vanilla: true}
	oneOp := trusting(seq(1, 10)...)
	for i := 1; i <= 10; i++ {
		oneOp.Operators[fpr(i)] = "acme"
	}
	noOps := trusting(1, 2, 3)
	noOps.Operators = nil
	withOwn := trusting(1, 2, 3)
	withOwn.Levels[fpr(1)] = attest.TrustOwn

	tests := []struct {
		desc      string
		claims    []Claim
		trust     TrustSource
		opt       Options
		want      float64
		consensus bool
		conflict  bool
		reason    string // a substring some reason line must contain
	}{
		{desc: "no claims", want: 0, reason: "no claims for this recipe"},
		{desc: "nil trust source: everyone unvetted", claims: agreeing(pure, 1, 5, time.Hour), want: 0, reason: "no trusted builder"},
		{desc: "1 trusted builder, fresh, pure", claims: agreeing(pure, 1, 1, time.Hour), trust: trusting(1), want: 1.4, consensus: true, reason: "1 trusted builder reports this hash (1 operator)"},
		{desc: "2 trusted, 2 operators", claims: agreeing(pure, 1, 2, time.Hour), trust: trusting(1, 2), want: 4.4, consensus: true, reason: "2 trusted builders agree (2 operators)"},
		{desc: "3 trusted, 3 operators, fresh, pure", claims: agreeing(pure, 1, 3, 2*time.Hour), trust: trusting(1, 2, 3), want: 6.3, consensus: true, reason: "newest agreeing claim 2h ago"},
		{desc: "5 trusted, 5 operators", claims: agreeing(pure, 1, 5, time.Hour), trust: trusting(seq(1, 5)...), want: 8.7, consensus: true},
		{desc: "4 trusted, 4 operators", claims: agreeing(pure, 1, 4, time.Hour), trust: trusting(seq(1, 4)...), want: 7.7, consensus: true},
		{desc: "5 trusted, patches", claims: agreeing(patches, 1, 5, time.Hour), trust: trusting(seq(1, 5)...), want: 6.6, consensus: true},
		{desc: "5 trusted agree, 1 trusted failed", trust: trusting(seq(1, 6)...), want: 8.3, consensus: true,
			claims: append(agreeing(pure, 1, 5, time.Hour), pure.claim(spec{key: 6, result: attest.ResultFailed}))},
		{desc: "10 trusted, 10 operators", claims: agreeing(pure, 1, 10, time.Hour), trust: trusting(seq(1, 10)...), want: 10, consensus: true},
		{desc: "20 trusted saturate at 10", claims: agreeing(pure, 1, 20, time.Hour), trust: trusting(seq(1, 20)...), want: 10, consensus: true},
		{desc: "10 trusted keys of one operator stay at 5", claims: agreeing(pure, 1, 10, time.Hour), trust: oneOp, want: 5, consensus: true, reason: "(1 operator)"},
		{desc: "operator unknown: peer IDs group keys", trust: noOps, want: 2.9, consensus: true, claims: pure.claims(
			spec{key: 1, peer: "12D3KooWsame"}, spec{key: 2, peer: "12D3KooWsame"}, spec{key: 3, peer: "12D3KooWsame"})},
		{desc: "operator and peer unknown: each key its own operator", claims: agreeing(pure, 1, 3, time.Hour), trust: noOps, want: 6.3, consensus: true},
		{desc: "own key votes once like any trusted key", claims: agreeing(pure, 1, 3, time.Hour), trust: withOwn, want: 6.3, consensus: true, reason: "including your own build"},
		{desc: "configure-only", claims: agreeing(configure, 1, 3, time.Hour), trust: trusting(1, 2, 3), want: 5.7, consensus: true, reason: "purity configure-only ×0.90"},
		{desc: "patches", claims: agreeing(patches, 1, 3, time.Hour), trust: trusting(1, 2, 3), want: 4.7, consensus: true, reason: "purity patches ×0.75"},
		{desc: "undeclared purity counts as patches", claims: agreeing(undeclared, 1, 3, time.Hour), trust: trusting(1, 2, 3), want: 4.7, consensus: true, reason: "purity not declared"},
		{desc: "vanilla build counts as pure", claims: agreeing(vanilla, 1, 3, time.Hour), trust: trusting(1, 2, 3), want: 6.3, consensus: true, reason: "vanilla Debian build"},
		{desc: "option purity overrides the claims", claims: agreeing(pure, 1, 3, time.Hour), trust: trusting(1, 2, 3), opt: Options{Purity: vocab.PurityPatches}, want: 4.7, consensus: true, reason: "purity from the opinion file"},
		{desc: "claims disagreeing on purity use the least pure", trust: trusting(1, 2, 3), want: 5.7, consensus: true, reason: "claims disagree on purity",
			claims: append(agreeing(pure, 1, 2, time.Hour), configure.claim(spec{key: 3}))},
		{desc: "48.5 days old", claims: agreeing(pure, 1, 3, 48*24*time.Hour+12*time.Hour), trust: trusting(1, 2, 3), want: 5.5, consensus: true, reason: "newest agreeing claim 48d ago — recency ×0.88"},
		{desc: "200 days old", claims: agreeing(pure, 1, 3, 200*24*time.Hour), trust: trusting(1, 2, 3), want: 4.7, consensus: true},
		{desc: "newest agreeing claim sets recency", trust: trusting(1, 2, 3), want: 6.3, consensus: true, claims: pure.claims(
			spec{key: 1, age: 300 * 24 * time.Hour}, spec{key: 2, age: 300 * 24 * time.Hour}, spec{key: 3, age: time.Hour})},
		{desc: "no evaluation time: recency at the floor", claims: agreeing(pure, 1, 3, time.Hour), trust: trusting(1, 2, 3), opt: Options{Now: time.Time{}}, want: 4.7, consensus: true, reason: "no evaluation time given"},
		{desc: "1 trusted failed among 3 agreeing", trust: trusting(1, 2, 3, 4), want: 5.8, consensus: true, reason: "1 trusted builder reports the build failed",
			claims: append(agreeing(pure, 1, 3, time.Hour), pure.claim(spec{key: 4, result: attest.ResultFailed}))},
		{desc: "unvetted failed does not count", trust: trusting(1, 2, 3), want: 6.3, consensus: true, reason: "1 unvetted key reports the build failed (not counted)",
			claims: append(agreeing(pure, 1, 3, time.Hour), pure.claim(spec{key: 4, result: attest.ResultFailed}))},
		{desc: "1 trusted dissent caps at 3", trust: trusting(seq(1, 6)...), want: 3, consensus: true, conflict: true, reason: "1 trusted dissent: " + fpr(6) + " reports a different hash — score capped at 3",
			claims: append(agreeing(pure, 1, 5, time.Hour), pure.claim(spec{key: 6, variant: "B"}))},
		{desc: "trusted unreproducible caps at 3", trust: trusting(seq(1, 6)...), want: 3, consensus: true, conflict: true, reason: "signed \"unreproducible\" — score capped at 3",
			claims: append(agreeing(pure, 1, 5, time.Hour), pure.claim(spec{key: 6, result: attest.ResultUnreproducible}))},
		{desc: "dissent does not raise a low score to the cap", want: 2.9, consensus: true, conflict: true,
			trust: func() StaticTrust {
				t := trusting(1, 2, 3, 4)
				for i := 1; i <= 3; i++ {
					t.Operators[fpr(i)] = "acme"
				}
				return t
			}(),
			claims: pure.claims(spec{key: 1}, spec{key: 2}, spec{key: 3}, spec{key: 4, variant: "B"})},
		{desc: "unvetted dissent does not count", trust: trusting(seq(1, 5)...), want: 8.7, consensus: true, reason: "1 unvetted key reports other hashes (not counted)",
			claims: append(agreeing(pure, 1, 5, time.Hour), pure.claim(spec{key: 6, variant: "B"}))},
		{desc: "2 against 2 is a conflict without consensus", trust: trusting(1, 2, 3, 4), want: 0, conflict: true, reason: "no hash has a majority (trusted keys per hash: 2 2)",
			claims: pure.claims(spec{key: 1}, spec{key: 2}, spec{key: 3, variant: "B"}, spec{key: 4, variant: "B"})},
		{desc: "100 unvetted agreeing keys add nothing", trust: trusting(1, 2, 3), want: 6.3, consensus: true, reason: "100 unvetted keys also report this hash (not counted)",
			claims: agreeing(pure, 1, 103, time.Hour)},
		{desc: "unvetted majority cannot outvote trusted keys", trust: trusting(1, 2, 3), want: 6.3, consensus: true,
			claims: append(agreeing(pure, 1, 3, time.Hour), func() []Claim {
				var cs []Claim
				for i := 10; i < 60; i++ {
					cs = append(cs, pure.claim(spec{key: i, variant: "EVIL"}))
				}
				return cs
			}()...)},
		{desc: "equivocating key is ignored", trust: trusting(1, 2, 3, 4), want: 6.3, consensus: true, reason: "equivocating key " + fpr(4) + " ignored",
			claims: append(agreeing(pure, 1, 3, time.Hour), pure.claim(spec{key: 4}), pure.claim(spec{key: 4, variant: "B", age: time.Minute}))},
		{desc: "key flagged by the trust source is ignored", want: 6.3, consensus: true, reason: "known to equivocate",
			trust:  func() StaticTrust { t := trusting(1, 2, 3, 4); t.Equivocators[fpr(4)] = true; return t }(),
			claims: append(agreeing(pure, 1, 3, time.Hour), pure.claim(spec{key: 4, variant: "B"}))},
		{desc: "a key's newest claim counts", trust: trusting(1, 2, 3), want: 4.0, consensus: true, reason: "1 trusted builder reports the build failed: " + fpr(3),
			claims: append(agreeing(pure, 1, 3, time.Hour), pure.claim(spec{key: 3, result: attest.ResultFailed, age: time.Minute}))},
		{desc: "the same claim twice counts once", trust: trusting(1, 2, 3), want: 6.3, consensus: true,
			claims: append(agreeing(pure, 1, 3, time.Hour), agreeing(pure, 1, 3, time.Hour)...)},
		{desc: "distrusted keys are dropped", want: 4.4, consensus: true, reason: "1 claim by distrusted keys ignored",
			trust:  func() StaticTrust { t := trusting(1, 2, 3); t.Levels[fpr(3)] = attest.TrustDistrusted; return t }(),
			claims: agreeing(pure, 1, 3, time.Hour)},
		{desc: "malformed claims are dropped", trust: trusting(1, 2, 3), want: 6.3, consensus: true, reason: "2 malformed claims ignored",
			claims: append(agreeing(pure, 1, 3, time.Hour), Claim{ID: "nil"}, Claim{ID: "noart", Statement: &attest.Statement{Builder: fpr(1), Result: attest.ResultSuccess}})},
		{desc: "claims for another recipe are dropped", trust: trusting(1, 2, 3), want: 6.3, consensus: true, reason: "2 claims for other recipes ignored",
			claims: append(agreeing(pure, 1, 3, time.Hour), agreeing(world{purity: vocab.PurityPatches, cid: "bafyother"}, 1, 2, time.Hour)...)},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			opt := tc.opt
			if opt.Now.IsZero() && !strings.Contains(tc.desc, "no evaluation time") {
				opt.Now = now
			}
			r := Evaluate(tc.claims, tc.trust, opt)
			assert.InDelta(t, tc.want, r.Score, 1e-9, "score; reasons:\n%s", strings.Join(r.Reasons, "\n"))
			assert.Equal(t, tc.consensus, r.Consensus != nil, "consensus")
			assert.Equal(t, tc.conflict, r.Conflict, "conflict")
			if tc.reason != "" {
				assert.Contains(t, strings.Join(r.Reasons, "\n"), tc.reason)
			}
			if r.Consensus != nil {
				assert.Contains(t, r.Reasons[len(r.Reasons)-1], "score ", "the last reason is the formula")
			}
		})
	}
}

func TestEvaluateReportContents(t *testing.T) {
	tr := trusting(1, 2, 3, 4, 5)
	tr.Equivocators[fpr(5)] = true
	claims := append(agreeing(pure, 1, 3, time.Hour),
		pure.claim(spec{key: 4, variant: "B"}),
		pure.claim(spec{key: 5}),
		pure.claim(spec{key: 6}),
		pure.claim(spec{key: 7, result: attest.ResultFailed}),
		pure.claim(spec{key: 8, variant: "A"}), pure.claim(spec{key: 8, variant: "C", age: time.Second}),
	)
	r := Evaluate(claims, tr, Options{Now: now})
	require.NotNil(t, r.Consensus)
	assert.Same(t, &r.Groups[0], r.Consensus)
	assert.Equal(t, pure.base().RecipeID, r.RecipeID)
	assert.Equal(t, "hello", r.Package)
	assert.Equal(t, "o3", r.Opinion)
	assert.Equal(t, vocab.PurityPureCompilation, r.Purity)
	assert.Equal(t, []string{fpr(5), fpr(8)}, r.Equivocators)
	require.Len(t, r.Groups, 2)
	assert.Len(t, r.Groups[0].Trusted, 3)
	assert.Len(t, r.Groups[0].Unvetted, 1)
	assert.Equal(t, 3, r.Groups[0].Operators)
	assert.Equal(t, debName, r.Groups[0].Artifacts[1].Name, "artifacts sorted by name")
	assert.Equal(t, now.Add(-time.Hour), r.Groups[0].NewestTrusted)
	require.Len(t, r.Dissenters, 1)
	assert.Equal(t, fpr(4), r.Dissenters[0].Fingerprint)
	require.Len(t, r.Failed, 1)
	assert.Equal(t, attest.TrustUnvetted, r.Failed[0].Level)
	assert.True(t, r.Conflict)
	assert.Equal(t, 3.0, r.Score)
	for i := 1; i < len(r.Groups[0].Trusted); i++ {
		assert.Less(t, r.Groups[0].Trusted[i-1].Fingerprint, r.Groups[0].Trusted[i].Fingerprint)
	}
}

func TestEvaluateAll(t *testing.T) {
	patches := world{purity: vocab.PurityPatches, cid: "bafyother"}
	claims := append(agreeing(pure, 1, 3, time.Hour), agreeing(patches, 1, 2, time.Hour)...)
	claims = append(claims, Claim{ID: "nil"})
	rs := EvaluateAll(claims, trusting(1, 2, 3), Options{Now: now})
	require.Len(t, rs, 2)
	assert.Less(t, rs[0].RecipeID, rs[1].RecipeID)
	byID := map[string]Report{rs[0].RecipeID: rs[0], rs[1].RecipeID: rs[1]}
	assert.Equal(t, 6.3, byID[pure.base().RecipeID].Score)
	assert.Equal(t, 0, byID[patches.base().RecipeID].Components.Dissent)
	assert.Equal(t, 2, byID[patches.base().RecipeID].Components.TrustedAgree)
}

func TestPickRecipeIgnoresUnvetted(t *testing.T) {
	patches := world{purity: vocab.PurityPatches, cid: "bafyother"}
	// Pure has 2 trusted keys; patches has 1 trusted and 500 unvetted.
	claims := agreeing(pure, 1, 2, time.Hour)
	claims = append(claims, patches.claim(spec{key: 3}))
	claims = append(claims, agreeing(patches, 100, 500, time.Hour)...)
	r := Evaluate(claims, trusting(1, 2, 3), Options{Now: now})
	assert.Equal(t, pure.base().RecipeID, r.RecipeID)
	r = Evaluate(claims, trusting(1, 2, 3), Options{Now: now, RecipeID: patches.base().RecipeID})
	assert.Equal(t, patches.base().RecipeID, r.RecipeID)
	assert.Equal(t, 1, r.Components.TrustedAgree)
}

func TestUnknownTrustLevelDoesNotVote(t *testing.T) {
	// An unknown level from a TrustSource must not vote.
	tr := trusting(1, 2, 3)
	tr.Levels[fpr(3)] = attest.Trust("root")
	r := Evaluate(agreeing(pure, 1, 3, time.Hour), tr, Options{Now: now})
	assert.Equal(t, 2, r.Components.TrustedAgree)
}
