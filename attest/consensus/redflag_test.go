package consensus

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
)

// mismatch is key's report that it was given debName with hash observed
// where it expected expected.
func mismatch(key int, observed, expected string, age time.Duration) Claim {
	s := pure.base()
	s.Builder = fpr(key)
	s.Timestamp = now.Add(-age)
	s.Result = attest.ResultMismatch
	s.Artifacts = []attest.Artifact{{Name: debName, SHA256: observed}}
	s.Expected = []attest.Artifact{{Name: debName, SHA256: expected}}
	s.Reason = "verify: differs"
	return Claim{ID: sum("flag" + fpr(key) + observed), Statement: &s, Received: s.Timestamp}
}

// Red flags are listed but never vote: a trusted builder that reports a
// tampered file keeps its success vote, a liar flagging the honest hash
// does not lower it, a distrusted reporter is not listed, and a file
// someone flagged gets the flag in its verdict's reasons.
func TestRedFlags(t *testing.T) {
	honest, tampered := debHash("A"), sum("tampered")
	claims := with(agreeing(pure, 1, 3, time.Hour),
		mismatch(1, tampered, honest, time.Minute),    // a trusted builder saw a tampered copy
		mismatch(8, tampered, honest, 2*time.Minute),  // an unvetted key saw it too
		mismatch(9, honest, sum("x"), 3*time.Minute),  // an unvetted liar flags the honest file
		mismatch(7, tampered, honest, 30*time.Second), // a distrusted key: not listed
	)
	trust := trusting(1, 2, 3)
	trust.Levels[fpr(7)] = attest.TrustDistrusted
	r := Evaluate(claims, trust, Options{Now: now})

	require.NotNil(t, r.Consensus)
	assert.Len(t, r.Consensus.Trusted, 3, "the reporting builder keeps its vote")
	assert.False(t, r.Conflict)
	require.Len(t, r.RedFlags, 3)
	assert.Equal(t, fpr(1), r.RedFlags[0].Fingerprint, "trusted first")
	assert.Equal(t, []string{fpr(8), fpr(9)}, []string{r.RedFlags[1].Fingerprint, r.RedFlags[2].Fingerprint}, "then newest first")
	assert.Equal(t, tampered, r.RedFlags[0].Observed)
	assert.Equal(t, honest, r.RedFlags[0].Expected)
	base := Evaluate(agreeing(pure, 1, 3, time.Hour), trusting(1, 2, 3), Options{Now: now})
	assert.Equal(t, base.Score, r.Score, "red flags do not change the score")

	v, reasons := r.VerdictFor(honest, debName, Options{})
	assert.Equal(t, Safe, v)
	assert.Contains(t, reasons[len(reasons)-1], "RED FLAG: this exact file was reported as differing from what its reporters expected by 0 trusted keys and 1 other key")
	assert.Contains(t, reasons[len(reasons)-1], "never outvote")

	v, reasons = r.VerdictFor(tampered, debName, Options{})
	assert.Equal(t, DoNotInstall, v)
	assert.Contains(t, reasons[len(reasons)-1], "by 1 trusted key and 1 other key ("+fpr(1)+")")

	// Only red flags, no builds: nothing to vote, UNVERIFIED.
	only := Evaluate([]Claim{mismatch(1, tampered, honest, time.Minute)}, trust, Options{Now: now, RecipeID: claims[0].Statement.RecipeID})
	assert.Nil(t, only.Consensus)
	assert.Len(t, only.RedFlags, 1)
	v, _ = only.VerdictFor(tampered, debName, Options{})
	assert.Equal(t, Unverified, v)
}
