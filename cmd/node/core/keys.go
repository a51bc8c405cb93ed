package core

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/store"
)

func keyInfo(k store.KeyInfo, t *trustView) KeyInfo {
	ki := KeyInfo{
		Fingerprint: k.Fingerprint, Trust: t.Level(k.Fingerprint), Stored: k.Trust, Via: t.via[k.Fingerprint],
		Revocation: t.revoked[k.Fingerprint], RotatedTo: t.rotated[k.Fingerprint].To,
		Source: k.Source, FirstSeen: k.FirstSeen, Equivocating: k.Equivocating, Note: k.Note,
	}
	if t.unreadable[k.Fingerprint] {
		ki.Note = joinNote(ki.Note, "does not vote: its stored key is of a kind the key rules refuse (Ed25519 or RSA 2048–4096, docs/TRUST.md); import a supported key")
	}
	return ki
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
	if _, err := n.trustNow(); err != nil { // in force when the caller returns
		return nil, err
	}
	n.KeyChanged(k.Fingerprint, "imported as "+string(trust), "import")
	return n.withTrust(k)
}

// KeyChanged puts an EventKey on the event stream: what changed about the
// key fpr, who caused it (a peer ID, "self", "import") and the trust
// level the key has now.
func (n *Node) KeyChanged(fpr, change, from string) {
	data := map[string]string{"change": change}
	if t, err := n.trust(); err == nil {
		data["trust"] = string(t.Level(fpr))
	}
	b, _ := json.Marshal(data)
	n.Emit(Event{Type: EventKey, Key: fpr, From: from, Data: b})
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
	if err := n.st.SetTrust(fpr, trust, note); err != nil {
		return err
	}
	if _, err := n.trustNow(); err != nil {
		return err
	}
	n.KeyChanged(fpr, "trust set to "+string(trust), "self")
	return nil
}

// CertifyKey certifies a stored key with the node's own key, stores the
// certification (store.MergeKey, which checks it) and publishes the key.
func (n *Node) CertifyKey(ctx context.Context, fpr string) (*KeyResult, error) {
	if n.id == nil {
		return nil, fmt.Errorf("certify key: %w on this node: run `lebowski key gen`", ErrNoIdentity)
	}
	fpr = vocab.NormalizeFingerprint(fpr)
	if err := vocab.CheckFingerprint(fpr); err != nil {
		return nil, Invalid(fmt.Errorf("certify key: %w", err))
	}
	if fpr == n.id.Fingerprint() {
		return nil, Invalid(fmt.Errorf("certify key: %s is this node's own key; certify other builders' keys", fpr))
	}
	if err := n.usableOwnKey("certify key"); err != nil {
		return nil, err
	}
	k, err := n.st.GetKey(fpr)
	if err != nil {
		return nil, fmt.Errorf("certify key: %w", err)
	}
	e, err := attest.ParsePublicKey(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("certify key: stored key %s: %w", fpr, err)
	}
	// A revoked key is certified only by the successor its rotation
	// names: that certification is the successor's acknowledgement, without
	// which the rotation does not count (docs/TRUST.md, "Rotation").
	certify := attest.Certify
	if r := attest.RevocationOf(e, n.now().Add(attest.DefaultSkew)); r != nil {
		if r.Compromised() || r.Successor != n.id.Fingerprint() {
			return nil, Invalid(fmt.Errorf("certify key: %s was revoked on %s (%s); certify its successor instead", fpr, r.Time.Format(time.DateOnly), r.Reason))
		}
		certify = attest.AcknowledgeRotation
	}
	if err := certify(n.id, e); err != nil {
		return nil, Invalid(fmt.Errorf("certify key: %w", err))
	}
	pub, err := attest.SerializeKey(e)
	if err != nil {
		return nil, fmt.Errorf("certify key: %w", err)
	}
	ki, out, err := n.st.MergeKey(pub, "certified by this node")
	if err != nil {
		return nil, fmt.Errorf("certify key %s: %w", fpr, err)
	}
	if !out.Changed() {
		return nil, fmt.Errorf("certify key %s: the store kept no new certification (%s): it already carries %d", fpr, out, attest.MaxCertifications)
	}
	if _, err := n.trustNow(); err != nil {
		return nil, err
	}
	n.log.Info("key certified", "key", fpr, "by", n.id.Fingerprint())
	n.KeyChanged(fpr, "certified by this node", "self")
	return n.publishKey(ctx, ki)
}

// RevokeKey revokes the node's own key, stores the revocation and
// publishes the revoked key.
func (n *Node) RevokeKey(ctx context.Context, req RevokeRequest) (*KeyResult, error) {
	if n.id == nil {
		return nil, fmt.Errorf("revoke key: %w on this node: nothing to revoke", ErrNoIdentity)
	}
	succ := ""
	if req.Successor != "" {
		succ = vocab.NormalizeFingerprint(req.Successor)
		if err := vocab.CheckFingerprint(succ); err != nil {
			return nil, Invalid(fmt.Errorf("revoke key: successor: %w", err))
		}
	}
	if err := n.ensureOwnKey(); err != nil {
		return nil, err
	}
	pub, err := attest.Revoke(n.id, succ, req.Reason, req.Compromised, n.now())
	if err != nil {
		return nil, Invalid(err)
	}
	ki, out, err := n.st.MergeKey(pub, "own key")
	if err != nil {
		return nil, fmt.Errorf("revoke key %s: %w", n.id.Fingerprint(), err)
	}
	if !out.Changed() {
		return nil, fmt.Errorf("revoke key %s: the store kept no new revocation (%s): it already carries %d", n.id.Fingerprint(), out, attest.ReservedRevocations)
	}
	if _, err := n.trustNow(); err != nil {
		return nil, err
	}
	n.log.Warn("own builder key revoked", "key", n.id.Fingerprint(), "successor", succ, "compromised", req.Compromised)
	n.KeyChanged(n.id.Fingerprint(), "own key revoked", "self")
	return n.publishKey(ctx, ki)
}

// AnnounceKey publishes a stored key ("" = the node's own) now.
func (n *Node) AnnounceKey(ctx context.Context, fpr string) (*KeyResult, error) {
	if fpr == "" {
		if n.id == nil {
			return nil, fmt.Errorf("announce key: %w on this node: run `lebowski key gen`", ErrNoIdentity)
		}
		if err := n.ensureOwnKey(); err != nil {
			return nil, err
		}
		fpr = n.id.Fingerprint()
	}
	fpr = vocab.NormalizeFingerprint(fpr)
	if err := vocab.CheckFingerprint(fpr); err != nil {
		return nil, Invalid(fmt.Errorf("announce key: %w", err))
	}
	if n.net == nil {
		return nil, fmt.Errorf("announce key: %w", ErrOffline)
	}
	k, err := n.st.GetKey(fpr)
	if err != nil {
		return nil, fmt.Errorf("announce key: %w", err)
	}
	res, err := n.publishKey(ctx, k)
	if err != nil {
		return nil, err
	}
	if !res.Published {
		return nil, fmt.Errorf("announce key %s: publishing on the keys topic failed (see lebowskid's log)", fpr)
	}
	return res, nil
}

// publishKey describes a stored key and publishes it when online.
func (n *Node) publishKey(ctx context.Context, k store.KeyInfo) (*KeyResult, error) {
	ki, err := n.withTrust(k)
	if err != nil {
		return nil, err
	}
	ki.PublicKey = k.PublicKey
	res := &KeyResult{KeyInfo: *ki}
	if n.net != nil {
		if err := n.net.PublishKey(ctx, k.PublicKey); err != nil {
			n.log.Warn("publish key", "key", k.Fingerprint, "err", err)
		} else {
			res.Published = true
		}
	}
	return res, nil
}

// usableOwnKey refuses to sign with a revoked own key.
func (n *Node) usableOwnKey(what string) error {
	if err := n.ensureOwnKey(); err != nil {
		return err
	}
	if r := attest.RevocationOf(n.st.Lookup(n.id.Fingerprint()), n.now()); r != nil {
		return fmt.Errorf("%s: %w: this node's key %s was revoked on %s (%s); generate a new one (docs/TRUST.md, rotation)",
			what, ErrNoIdentity, n.id.Fingerprint(), r.Time.Format(time.DateOnly), r.Reason)
	}
	return nil
}
