package consensus

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
)

func TestVerdictFor(t *testing.T) {
	three := agreeing(pure, 1, 3, time.Hour)
	five := agreeing(pure, 1, 5, time.Hour)
	tests := []struct {
		desc   string
		claims []Claim
		trust  TrustSource
		opt    Options
		hash   string
		name   string
		want   Verdict
		reason string // substring of some verdict reason
	}{
		{desc: "3 trusted agree, hash and name match", claims: three, trust: trusting(1, 2, 3), hash: debHash("A"), name: debName, want: Safe, reason: "reaches the threshold 6"},
		{desc: "name not given, hash in the group", claims: three, trust: trusting(1, 2, 3), hash: debHash("A"), want: Safe, reason: "matches " + debName},
		{desc: "upper-case hash and a path as name", claims: three, trust: trusting(1, 2, 3), hash: strings.ToUpper(debHash("A")), name: "/var/cache/apt/archives/" + debName, want: Safe},
		{desc: "unknown name, hash in the group (renamed file)", claims: three, trust: trusting(1, 2, 3), hash: debHash("A"), name: "renamed.deb", want: Safe},
		{desc: "name known, different hash", claims: three, trust: trusting(1, 2, 3), hash: sum("tampered"), name: debName, want: DoNotInstall, reason: "3 trusted builders report sha256 " + debHash("A")},
		{desc: "name known, hash of another artifact of the group (substitution)", claims: three, trust: trusting(1, 2, 3), hash: sum("A/dbg"), name: debName, want: DoNotInstall},
		{desc: "name known, hash only in an unvetted group", claims: with(three, pure.claim(spec{key: 9, variant: "EVIL"})), trust: trusting(1, 2, 3),
			hash: debHash("EVIL"), name: debName, want: DoNotInstall, reason: "matches only claims by unvetted keys: " + fpr(9)},
		{desc: "name unknown, hash unknown", claims: three, trust: trusting(1, 2, 3), hash: sum("x"), name: "other.deb", want: Unverified, reason: "none of them is called other.deb"},
		{desc: "no name, hash unknown", claims: three, trust: trusting(1, 2, 3), hash: sum("x"), want: Unverified, reason: "no file name given"},
		{desc: "1 trusted builder: too few and low score", claims: three, trust: trusting(1), hash: debHash("A"), name: debName, want: Unverified, reason: "only 1 of the 2 trusted builders needed agree"},
		{desc: "low threshold still needs MinTrusted", claims: three, trust: trusting(1), opt: Options{Threshold: 1}, hash: debHash("A"), want: Unverified, reason: "only 1 of the 2"},
		{desc: "MinTrusted 1 and low threshold accept one builder", claims: three, trust: trusting(1), opt: Options{Threshold: 1, MinTrusted: 1}, hash: debHash("A"), want: Safe},
		{desc: "score below threshold", claims: agreeing(pure, 1, 2, time.Hour), trust: trusting(1, 2), hash: debHash("A"), want: Unverified, reason: "score 4.4/10 is below the threshold 6"},
		{desc: "higher threshold", claims: five, trust: trusting(1, 2, 3, 4, 5), opt: Options{Threshold: 9}, hash: debHash("A"), want: Unverified, reason: "below the threshold 9"},
		{desc: "5 trusted and one trusted failure is still safe", claims: with(five, pure.claim(spec{key: 6, result: attest.ResultFailed})), trust: trusting(seq(1, 6)...), hash: debHash("A"), want: Safe},
		{desc: "trusted dissent: file matches the consensus", claims: with(five, pure.claim(spec{key: 6, variant: "B"})), trust: trusting(seq(1, 6)...), hash: debHash("A"), name: debName, want: DoNotInstall, reason: "1 trusted dissent (" + fpr(6) + ")"},
		{desc: "trusted dissent even with a low threshold", claims: with(five, pure.claim(spec{key: 6, variant: "B"})), trust: trusting(seq(1, 6)...), opt: Options{Threshold: 0.1, MinTrusted: 1}, hash: debHash("A"), want: DoNotInstall},
		{desc: "trusted unreproducible blocks SAFE", claims: with(five, pure.claim(spec{key: 6, result: attest.ResultUnreproducible})), trust: trusting(seq(1, 6)...), hash: debHash("A"), want: DoNotInstall},
		{desc: "trusted dissent: file matches the dissenter", claims: with(five, pure.claim(spec{key: 6, variant: "B"})), trust: trusting(seq(1, 6)...), hash: debHash("B"), want: DoNotInstall, reason: "reported by 1 trusted key: " + fpr(6)},
		{desc: "tie between trusted groups", claims: pure.claims(spec{key: 1}, spec{key: 2, variant: "B"}), trust: trusting(1, 2), hash: debHash("A"), want: DoNotInstall, reason: "no hash has a majority"},
		{desc: "no claims at all", hash: debHash("A"), name: debName, want: Unverified, reason: "no claims for this recipe"},
		{desc: "only unvetted claims, file matches them", claims: agreeing(pure, 1, 50, time.Hour), hash: debHash("A"), name: debName, want: Unverified, reason: "matches only claims by unvetted keys: " + fpr(1) + ", " + fpr(2)},
		{desc: "only a trusted unreproducible claim", claims: pure.claims(spec{key: 1, result: attest.ResultUnreproducible}), trust: trusting(1), hash: debHash("A"), want: Unverified, reason: "1 trusted key signed \"unreproducible\""},
		{desc: "hash is not hex", claims: three, trust: trusting(1, 2, 3), hash: "not-a-hash", want: Unverified, reason: "not a sha256"},
		{desc: "empty hash", claims: three, trust: trusting(1, 2, 3), want: Unverified, reason: "not a sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			opt := tc.opt
			opt.Now = now
			r := Evaluate(tc.claims, tc.trust, opt)
			v, why := r.VerdictFor(tc.hash, tc.name, opt)
			assert.Equal(t, tc.want, v, "reasons:\n%s", strings.Join(why, "\n"))
			assert.NotEmpty(t, why)
			if tc.reason != "" {
				assert.Contains(t, strings.Join(why, "\n"), tc.reason)
			}
			assert.Equal(t, v == Safe, v.OK())
		})
	}
}

func TestVerdictAfterJSONRoundTrip(t *testing.T) {
	r := Evaluate(append(agreeing(pure, 1, 3, time.Hour), pure.claim(spec{key: 9, variant: "EVIL"})), trusting(1, 2, 3), Options{Now: now})
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var back Report
	require.NoError(t, json.Unmarshal(b, &back))
	for _, h := range []string{debHash("A"), debHash("EVIL"), sum("x")} {
		v1, w1 := r.VerdictFor(h, debName, Options{})
		v2, w2 := back.VerdictFor(h, debName, Options{})
		assert.Equal(t, v1, v2)
		assert.Equal(t, w1, w2)
	}
	assert.Contains(t, string(b), `"level":"trusted"`)
}

func TestBar(t *testing.T) {
	tests := []struct {
		desc  string
		score float64
		width int
		want  string
	}{
		{"design example", 8, 10, "████████░░ 8/10"},
		{"rounded down", 8.99, 10, "████████░░ 8/10"},
		{"zero", 0, 10, "░░░░░░░░░░ 0/10"},
		{"full", 10, 10, "██████████ 10/10"},
		{"above 10 clamps", 11.5, 10, "██████████ 10/10"},
		{"negative clamps", -3, 10, "░░░░░░░░░░ 0/10"},
		{"NaN is 0", math.NaN(), 10, "░░░░░░░░░░ 0/10"},
		{"+Inf is 10", math.Inf(1), 10, "██████████ 10/10"},
		{"-Inf is 0", math.Inf(-1), 10, "░░░░░░░░░░ 0/10"},
		{"width 20 scales", 6.3, 20, "████████████░░░░░░░░ 6/10"},
		{"width 5 rounds blocks down", 7, 5, "███░░ 7/10"},
		{"width 0 is the label only", 6.3, 0, "6/10"},
		{"negative width is the label only", 6.3, -4, "6/10"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			assert.Equal(t, tc.want, Bar(tc.score, tc.width))
		})
	}
	t.Run("huge width is bounded", func(t *testing.T) {
		b := Bar(5, 1<<40)
		assert.Equal(t, MaxBarWidth, strings.Count(b, "█")+strings.Count(b, "░"))
	})
	t.Run("every score and width has width cells", func(t *testing.T) {
		for w := 1; w <= 40; w++ {
			for s := -1.0; s <= 11; s += 0.25 {
				b := Bar(s, w)
				full, light := strings.Count(b, "█"), strings.Count(b, "░")
				assert.Equal(t, w, full+light, "score %v width %d: %q", s, w, b)
				assert.LessOrEqual(t, full, w)
			}
		}
	})
}
