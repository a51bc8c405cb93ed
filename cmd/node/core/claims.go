package core

import (
	"context"
	"fmt"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/store"
)

// MaxImport bounds the claims of one ImportClaims call.
const MaxImport = 100000

// ImportClaims verifies and stores wire envelopes; each gets a result, a
// bad one does not stop the others.
func (n *Node) ImportClaims(ctx context.Context, wires [][]byte) ([]ImportResult, error) {
	if len(wires) > MaxImport {
		return nil, Invalid(fmt.Errorf("%d claims in one import (max %d): split the file", len(wires), MaxImport))
	}
	res, err := n.ingestWires(ctx, store.Origin{Via: store.ViaImport}, wires)
	if err != nil {
		return nil, err
	}
	if _, err := n.trustNow(); err != nil { // keys the claims brought are in force on return
		return nil, err
	}
	out := make([]ImportResult, len(res))
	for i, r := range res {
		out[i] = ImportResult{ID: r.ID, Status: r.Status.String()}
		if r.Err != nil {
			out[i].Error = r.Err.Error()
		}
	}
	return out, nil
}

// Claims lists the claims of a package (all packages if q.Package is "").
func (n *Node) Claims(ctx context.Context, q ClaimsQuery) ([]ClaimRow, error) {
	pkgs := []string{q.Package}
	if q.Package == "" {
		var err error
		if pkgs, err = n.st.Packages(); err != nil {
			return nil, err
		}
	} else if err := vocab.CheckPackage(q.Package); err != nil {
		return nil, Invalid(err)
	}
	out := []ClaimRow{}
	for _, p := range pkgs {
		rcs, err := n.st.ByPackage(p, "")
		if err != nil {
			return nil, err
		}
		for _, rc := range rcs {
			for _, c := range rc.Claims {
				out = append(out, ClaimRow{StoredClaim: c, Package: rc.Recipe.Package, Version: rc.Recipe.Version, Opinion: rc.Recipe.Opinion.Name})
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Claim returns one stored claim with its evidence.
func (n *Node) Claim(ctx context.Context, id string) (*ClaimDetail, error) {
	c, err := n.storedClaim(id)
	if err != nil {
		return nil, err
	}
	full := c.ID
	d := &ClaimDetail{ID: c.ID, Statement: c.Statement, Payload: c.Envelope.Payload, Signature: c.Envelope.Signature}
	k, err := n.st.GetKey(c.Statement.Builder)
	if err != nil {
		return nil, fmt.Errorf("claim %s: signer key: %w", full, err)
	}
	ki, err := n.withTrust(k)
	if err != nil {
		return nil, err
	}
	d.Signer = *ki
	signer, err := attest.ParsePublicKey(k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("claim %s: signer key: %w", full, err)
	}
	if d.SignerKey, err = attest.ArmorPublicKey(signer); err != nil {
		return nil, err
	}
	env := *c.Envelope
	env.Key = k.PublicKey
	if d.Wire, err = env.Encode(); err != nil {
		return nil, err
	}
	if o, ok, err := n.st.Origin(full); err != nil {
		return nil, err
	} else if ok {
		d.Origin = &o
	}
	for _, e := range []struct{ kind, cid string }{
		{"buildinfo", c.Statement.BuildinfoCID}, {"build log", c.Statement.LogCID}, {"lock", c.Statement.LockCID},
	} {
		if e.cid == "" {
			continue
		}
		held, err := n.st.HasBlob(e.cid)
		if err != nil {
			return nil, err
		}
		d.Evidence = append(d.Evidence, Evidence{Kind: e.kind, CID: e.cid, Held: held})
	}
	return d, nil
}

// InToto signs the in-toto view of one of this node's own claims.
func (n *Node) InToto(ctx context.Context, id string) (*attest.DSSEEnvelope, error) {
	if n.id == nil {
		return nil, fmt.Errorf("%w: the in-toto export is signed with this node's builder key (create one with `lebowski key gen`)", ErrNoIdentity)
	}
	c, err := n.storedClaim(id)
	if err != nil {
		return nil, err
	}
	full := c.ID
	if c.Statement.Builder != n.id.Fingerprint() {
		return nil, Invalid(fmt.Errorf("claim %s was signed by %s, not this node's key %s: an in-toto export is signed by the builder, so only own claims can be exported (export the OpenPGP claim instead)", full, c.Statement.Builder, n.id.Fingerprint()))
	}
	payload, err := c.InToto()
	if err != nil {
		return nil, Invalid(err)
	}
	return attest.SignDSSE(n.id, attest.PayloadTypeInToto, payload)
}

// storedClaim returns the claim with this ID or unique prefix.
func (n *Node) storedClaim(id string) (*attest.Claim, error) {
	full, err := n.resolveClaim(id)
	if err != nil {
		return nil, err
	}
	c, ok, err := n.st.Get(full)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: claim %s", ErrNotFound, full)
	}
	return c, nil
}

// resolveClaim turns a claim ID or unique prefix into the full ID.
func (n *Node) resolveClaim(id string) (string, error) {
	ids, err := n.st.ResolveClaim(id, 2)
	if err != nil {
		return "", Invalid(err)
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("%w: no claim %s in this node's store (`lebowski claims list` shows them)", ErrNotFound, id)
	case 1:
		return ids[0], nil
	}
	return "", Invalid(fmt.Errorf("claim id prefix %s is ambiguous (%s, %s, …): give more characters", id, ids[0], ids[1]))
}
