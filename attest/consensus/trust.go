package consensus

import (
	"errors"
	"fmt"
	"strings"
)

// TrustLevel is how far the local operator trusts a builder key. The caller
// (the daemon's keyring) computes it: a key is Trusted when the operator
// lists it, or when it is certified by a trusted key within K hops.
type TrustLevel int

const (
	// Distrusted keys (revoked, or explicitly distrusted by the operator)
	// are dropped before anything else: their claims are not even listed.
	Distrusted TrustLevel = -1
	// Unvetted keys are listed (groups, failed, unreproducible) but count
	// for nothing in the score, the consensus or the verdict.
	Unvetted TrustLevel = 0
	// Trusted keys each have one vote per recipe.
	Trusted TrustLevel = 1
	// Ultimate is the node's own key. It votes exactly like Trusted (one
	// vote); the level only marks "your own build" in reports.
	Ultimate TrustLevel = 2
)

// String returns "distrusted", "unvetted", "trusted" or "ultimate".
func (l TrustLevel) String() string {
	switch l {
	case Distrusted:
		return "distrusted"
	case Trusted:
		return "trusted"
	case Ultimate:
		return "ultimate"
	case Unvetted:
		return "unvetted"
	}
	return fmt.Sprintf("TrustLevel(%d)", int(l))
}

// MarshalText makes levels readable in --json output.
func (l TrustLevel) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses what MarshalText writes.
func (l *TrustLevel) UnmarshalText(b []byte) error {
	for _, v := range []TrustLevel{Distrusted, Unvetted, Trusted, Ultimate} {
		if string(b) == v.String() {
			*l = v
			return nil
		}
	}
	return fmt.Errorf("%w: trust level %q (want distrusted, unvetted, trusted or ultimate)", ErrInvalidTrustLevel, b)
}

// ErrInvalidTrustLevel is returned when decoding an unknown trust level.
var ErrInvalidTrustLevel = errors.New("consensus: invalid trust level")

// normalize maps unknown values to Unvetted, the level that cannot do harm.
func (l TrustLevel) normalize() TrustLevel {
	switch l {
	case Distrusted, Trusted, Ultimate:
		return l
	}
	return Unvetted
}

// votes reports whether a key of this level counts in the score.
func (l TrustLevel) votes() bool { return l == Trusted || l == Ultimate }

// TrustSource is the operator's view of builder keys. Fingerprints are
// upper-case hex, as in attest.Statement.Builder.
type TrustSource interface {
	// Level is the key's trust level.
	Level(fingerprint string) TrustLevel
	// Equivocating reports whether the key is known (e.g. from a stored
	// equivocation proof for any recipe) to have signed conflicting claims.
	Equivocating(fingerprint string) bool
	// Operator is an optional grouping key for diversity: keys run by the
	// same person or organisation return the same string; "" = unknown.
	Operator(fingerprint string) string
}

// StaticTrust is a map-backed TrustSource. Nil maps are fine; keys are
// looked up upper-cased.
type StaticTrust struct {
	Levels       map[string]TrustLevel
	Equivocators map[string]bool
	Operators    map[string]string
}

// Level returns the listed level, Unvetted for unlisted keys.
func (s StaticTrust) Level(fpr string) TrustLevel { return s.Levels[strings.ToUpper(fpr)] }

// Equivocating reports whether the key is listed as an equivocator.
func (s StaticTrust) Equivocating(fpr string) bool { return s.Equivocators[strings.ToUpper(fpr)] }

// Operator returns the listed operator, "" when unknown.
func (s StaticTrust) Operator(fpr string) string { return s.Operators[strings.ToUpper(fpr)] }

// noTrust is used when Evaluate gets a nil TrustSource: everyone is unvetted.
type noTrust struct{}

func (noTrust) Level(string) TrustLevel  { return Unvetted }
func (noTrust) Equivocating(string) bool { return false }
func (noTrust) Operator(string) string   { return "" }
