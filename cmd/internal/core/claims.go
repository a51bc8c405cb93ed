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
	res, err := n.st.VerifyAndIngest(ctx, attest.VerifyOptions{Now: n.now()}, wires...)
	if err != nil {
		return nil, err
	}
	out := make([]ImportResult, len(res))
	for i, r := range res {
		out[i] = ImportResult{ID: r.ID, Status: r.Status.String()}
		if r.Err != nil {
			out[i].Error = r.Err.Error()
		}
		if r.Status == store.StatusNew || r.Status == store.StatusEquivocation {
			n.Emit(Event{Type: EventClaim, ClaimID: r.ID, From: "import"})
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
