package attest

import (
	"errors"
	"fmt"
)

// Trust is how far the local operator trusts a builder key: the one trust
// type of the store (where operator choices persist), the node's trust
// view and consensus. Keys are looked up by upper-case fingerprint.
type Trust string

const (
	// TrustUnknown: learned from a claim's envelope, never looked at. It
	// counts like TrustUnvetted.
	TrustUnknown Trust = "unknown"
	// TrustUnvetted keys are listed (groups, failed, unreproducible) but
	// count for nothing in the score, the consensus or the verdict.
	TrustUnvetted Trust = "unvetted"
	// TrustCertified keys are certified by a trusted key within the
	// configured number of hops (OpenPGP certifications). Derived by the
	// node's trust view, never stored. They vote like TrustTrusted.
	TrustCertified Trust = "certified"
	// TrustTrusted keys are vouched for by the operator; each has one vote
	// per recipe.
	TrustTrusted Trust = "trusted"
	// TrustOwn is the node's own builder key. It votes exactly like
	// TrustTrusted (one vote); the level only marks "your own build".
	TrustOwn Trust = "own"
	// TrustDistrusted keys (rejected by the operator, or revoked) are
	// dropped before anything else: their claims are not even listed.
	TrustDistrusted Trust = "distrusted"
)

// ErrInvalidTrust is returned for an unknown trust level.
var ErrInvalidTrust = errors.New("invalid trust level")

// Valid reports whether t is a known level.
func (t Trust) Valid() bool {
	switch t {
	case TrustUnknown, TrustUnvetted, TrustCertified, TrustTrusted, TrustOwn, TrustDistrusted:
		return true
	}
	return false
}

// Stored reports whether t is a level the store keeps: every valid level
// but TrustCertified, which is derived.
func (t Trust) Stored() bool { return t.Valid() && t != TrustCertified }

// Votes reports whether a key of this level counts in the score.
func (t Trust) Votes() bool { return t == TrustTrusted || t == TrustOwn || t == TrustCertified }

// Normalize maps unknown values (and TrustUnknown) to TrustUnvetted, the
// level that cannot do harm.
func (t Trust) Normalize() Trust {
	switch t {
	case TrustDistrusted, TrustTrusted, TrustOwn, TrustCertified, TrustUnvetted:
		return t
	}
	return TrustUnvetted
}

// ParseOperatorTrust parses a level an operator may set on a key:
// trusted, unvetted or distrusted.
func ParseOperatorTrust(s string) (Trust, error) {
	switch t := Trust(s); t {
	case TrustTrusted, TrustUnvetted, TrustDistrusted:
		return t, nil
	}
	return "", fmt.Errorf("%w %q: want trusted, unvetted or distrusted", ErrInvalidTrust, s)
}
