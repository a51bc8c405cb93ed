package consensus

import (
	"strings"

	"github.com/lebowski-dist/lebowski/attest"
)

// TrustSource is the operator's view of builder keys (the node's trust
// view: keys the operator trusts, keys certified by them within K hops,
// equivocators). Fingerprints are upper-case hex, as in
// attest.Statement.Builder.
type TrustSource interface {
	// Level is the key's trust level; unknown values count as unvetted.
	Level(fingerprint string) attest.Trust
	// Equivocating reports whether the key is known (e.g. from a stored
	// equivocation proof for any recipe) to have signed conflicting claims.
	Equivocating(fingerprint string) bool
	// Operator is an optional grouping key for diversity: keys run by the
	// same person or organisation return the same string; "" = unknown
	// (the claim's peer ID, else the key, stands in). It is asked only for
	// keys whose level votes. The node's trust view returns the key's
	// certification cluster — the directly trusted key its trust comes
	// from — so peer IDs, which anyone can mint, count for nothing there
	// (docs/TRUST.md, "Operator diversity").
	Operator(fingerprint string) string
}

// StaticTrust is a map-backed TrustSource. Nil maps are fine; keys are
// looked up upper-cased.
type StaticTrust struct {
	Levels       map[string]attest.Trust
	Equivocators map[string]bool
	Operators    map[string]string
}

// Level returns the listed level, unvetted for unlisted keys.
func (s StaticTrust) Level(fpr string) attest.Trust {
	if l, ok := s.Levels[strings.ToUpper(fpr)]; ok {
		return l
	}
	return attest.TrustUnvetted
}

// Equivocating reports whether the key is listed as an equivocator.
func (s StaticTrust) Equivocating(fpr string) bool { return s.Equivocators[strings.ToUpper(fpr)] }

// Operator returns the listed operator, "" when unknown.
func (s StaticTrust) Operator(fpr string) string { return s.Operators[strings.ToUpper(fpr)] }

// noTrust is used when Evaluate gets a nil TrustSource: everyone is unvetted.
type noTrust struct{}

func (noTrust) Level(string) attest.Trust { return attest.TrustUnvetted }
func (noTrust) Equivocating(string) bool  { return false }
func (noTrust) Operator(string) string    { return "" }
