package core

import (
	"context"
	"fmt"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Opinion returns an opinion's bundle, by CID or by name: for a name, the
// CID of the best-ranked recipe (consensus.Rank: trusted builders first)
// whose claims name an opinion of that name, so a flood of unvetted claims
// naming another opinion content does not choose what this node builds.
// The bytes come from this node's blobs or from a peer; the caller keeps
// them with opinions.WriteBundle, which checks them against the CID.
func (n *Node) Opinion(ctx context.Context, q OpinionQuery) (*OpinionBundle, error) {
	out := &OpinionBundle{CID: q.CID}
	if q.CID == "" {
		if err := vocab.CheckPackage(q.Package); err != nil {
			return nil, Invalid(err)
		}
		if err := vocab.CheckOpinionName(q.Name); err != nil {
			return nil, Invalid(err)
		}
		rvs, err := n.st.Voters(q.Package, "")
		if err != nil {
			return nil, err
		}
		kept := rvs[:0]
		for _, rv := range rvs {
			if rv.Recipe.Opinion.Name == q.Name && rv.Recipe.Opinion.CID != "" {
				kept = append(kept, rv)
			}
		}
		if len(kept) == 0 {
			return nil, fmt.Errorf("%w: no claims name an opinion %s/%s, so its content is unknown here (wait for peers' claims, or give its CID)", ErrNotFound, q.Package, q.Name)
		}
		trust, err := n.trust()
		if err != nil {
			return nil, err
		}
		ranked, err := n.rank(kept, trust)
		if err != nil {
			return nil, err
		}
		best := ranked[0]
		out.CID, out.Claims = best.Recipe.Opinion.CID, best.Recipe.Claims
	} else if _, err := vocab.ParseCID(q.CID); err != nil {
		return nil, Invalid(err)
	}
	data, err := n.FetchBlob(ctx, out.CID)
	if err != nil {
		return nil, fmt.Errorf("opinion %s: %w", out.CID, err)
	}
	out.Data = data
	return out, nil
}
