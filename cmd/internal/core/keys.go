package core

import (
	"context"
	"fmt"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/store"
)

func keyInfo(k store.KeyInfo, t *trustView) KeyInfo {
	return KeyInfo{
		Fingerprint: k.Fingerprint, Trust: t.Level(k.Fingerprint), Stored: k.Trust, Via: t.via[k.Fingerprint],
		Source: k.Source, FirstSeen: k.FirstSeen, Equivocating: k.Equivocating, Note: k.Note,
	}
}

// Keys lists known builder keys with the effective trust.
func (n *Node) Keys(ctx context.Context) ([]KeyInfo, error) {
	keys, err := n.st.Keys()
	if err != nil {
		return nil, err
	}
	t, err := n.trust()
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		ki := keyInfo(k, t)
		for _, f := range n.trusted {
			if f == k.Fingerprint && ki.Trust == attest.TrustTrusted && k.Trust != attest.TrustTrusted {
				ki.Note = joinNote(ki.Note, "trusted by config")
			}
		}
		out = append(out, ki)
	}
	return out, nil
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + " (" + b + ")"
}

// Key returns one stored key with its public key.
func (n *Node) Key(ctx context.Context, fpr string) (*KeyInfo, error) {
	fpr = vocab.NormalizeFingerprint(fpr)
	if err := vocab.CheckFingerprint(fpr); err != nil {
		return nil, Invalid(err)
	}
	k, err := n.st.GetKey(fpr)
	if err != nil {
		return nil, err
	}
	ki, err := n.withTrust(k)
	if err != nil {
		return nil, err
	}
	ki.PublicKey = k.PublicKey
	return ki, nil
}

// withTrust describes a stored key with the current trust view.
func (n *Node) withTrust(k store.KeyInfo) (*KeyInfo, error) {
	t, err := n.trust()
	if err != nil {
		return nil, err
	}
	ki := keyInfo(k, t)
	return &ki, nil
}

// ImportKey stores a public key with an operator trust level.
func (n *Node) ImportKey(ctx context.Context, pub []byte, trust attest.Trust, source string) (*KeyInfo, error) {
	if _, err := attest.ParseOperatorTrust(string(trust)); err != nil {
		return nil, Invalid(err)
	}
	if _, err := attest.ParsePublicKey(pub); err != nil {
		return nil, Invalid(fmt.Errorf("import key: %w", err))
	}
	k, err := n.st.PutKey(pub, trust, source)
	if err != nil {
		return nil, err
	}
	return n.withTrust(k)
}

// SetTrust changes a stored key's operator trust level.
func (n *Node) SetTrust(ctx context.Context, fpr string, trust attest.Trust, note string) error {
	fpr = vocab.NormalizeFingerprint(fpr)
	if err := vocab.CheckFingerprint(fpr); err != nil {
		return Invalid(err)
	}
	if _, err := attest.ParseOperatorTrust(string(trust)); err != nil {
		return Invalid(err)
	}
	if n.id != nil && fpr == n.id.Fingerprint() {
		return Invalid(fmt.Errorf("%s is this node's own key; its trust is always %q", fpr, attest.TrustOwn))
	}
	return n.st.SetTrust(fpr, trust, note)
}
