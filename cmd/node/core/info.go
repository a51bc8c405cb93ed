package core

import (
	"context"
	"fmt"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/store"
)

// Info evaluates the recipes of a package. Recipes are ranked from their
// index summaries with consensus.Rank (no claim is decoded for that);
// only the best one is evaluated — decoding its claims — unless q.All.
func (n *Node) Info(ctx context.Context, q InfoQuery) (*InfoResult, error) {
	if err := vocab.CheckPackage(q.Package); err != nil {
		return nil, Invalid(err)
	}
	if q.DebianVersion != "" {
		if err := vocab.CheckVersion(q.DebianVersion); err != nil {
			return nil, Invalid(err)
		}
	}
	if q.Opinion != "" && q.Opinion != vocab.Vanilla {
		if err := vocab.CheckOpinionName(q.Opinion); err != nil {
			return nil, Invalid(err)
		}
	}
	rvs, err := n.st.Voters(q.Package, q.DebianVersion)
	if err != nil {
		return nil, err
	}
	kept := rvs[:0]
	for _, rv := range rvs {
		if opinionMatches(rv.Recipe, q) {
			kept = append(kept, rv)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("%w: no claims for %s in this node's store (import some with `lebowski claims import`, or wait for peers)", ErrNotFound, describeQuery(q))
	}
	trust, err := n.trust()
	if err != nil {
		return nil, err
	}
	if kept, err = n.rank(kept, trust); err != nil {
		return nil, err
	}
	if !q.All {
		kept = kept[:1]
	}
	res := &InfoResult{Package: q.Package}
	for _, rv := range kept {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		claims, err := n.st.ByRecipe(rv.Recipe.RecipeID)
		if err != nil {
			return nil, err
		}
		ri, err := n.evaluate(store.RecipeClaims{Recipe: rv.Recipe, Claims: claims}, trust)
		if err != nil {
			return nil, err
		}
		res.Recipes = append(res.Recipes, ri)
	}
	return res, nil
}

func describeQuery(q InfoQuery) string {
	what := q.Package
	if q.DebianVersion != "" {
		what += " " + q.DebianVersion
	}
	if q.Opinion != "" {
		what += " (opinion " + q.Opinion + ")"
	}
	if q.OpinionCID != "" {
		what += " built from opinion content " + q.OpinionCID
	}
	return what
}

func opinionMatches(r store.RecipeSummary, q InfoQuery) bool {
	if q.OpinionCID != "" && r.Opinion.CID != q.OpinionCID {
		return false
	}
	switch q.Opinion {
	case "":
		return true
	case vocab.Vanilla:
		return r.Opinion.Name == ""
	}
	return r.Opinion.Name == q.Opinion
}

// rank orders recipes with consensus.Rank: unvetted keys are free to
// create, so a flood of them for another recipe must not displace the
// recipe trusted builders agree on (docs/SECURITY.md). A rotated key's
// claims signed before its revocation count as its successor's
// (trustView.countAs). It reads the recipes' voter lists (store.Voters:
// one entry per key), not their claims; only for a rotated key does it
// read when its votes were signed (store.VoteSpan: the first and the last
// count as they would claim by claim).
func (n *Node) rank(rvs []store.RecipeVoters, trust *trustView) ([]store.RecipeVoters, error) {
	votes := make([]consensus.RecipeVotes, len(rvs))
	byID := make(map[string]store.RecipeVoters, len(rvs))
	for i, rv := range rvs {
		v := consensus.RecipeVotes{RecipeID: rv.Recipe.RecipeID, Newest: rv.Recipe.Newest, Builders: make([]string, 0, len(rv.Voters))}
		for _, vt := range rv.Voters {
			if _, rotated := trust.rotated[vt.Builder]; !rotated {
				v.Builders = append(v.Builders, vt.Builder)
				continue
			}
			first, last, ok, err := n.st.VoteSpan(vt.Builder, rv.Recipe.RecipeID)
			if err != nil {
				return nil, err
			}
			if ok {
				v.Builders = append(v.Builders, trust.countAs(vt.Builder, first), trust.countAs(vt.Builder, last))
			}
		}
		votes[i] = v
		byID[rv.Recipe.RecipeID] = rv
	}
	consensus.Rank(votes, trust)
	out := make([]store.RecipeVoters, len(votes))
	for i, v := range votes {
		out[i] = byID[v.RecipeID]
	}
	return out, nil
}

// evaluate decodes a recipe's claims and runs consensus on them. A
// rotated key's claims signed before its revocation are evaluated as its
// successor's (one vote per key: the successor's newest claim counts).
func (n *Node) evaluate(rc store.RecipeClaims, trust *trustView) (RecipeInfo, error) {
	ids := make([]string, len(rc.Claims))
	own := false
	for i, c := range rc.Claims {
		ids[i] = c.ID
		if n.id != nil && c.Builder == n.id.Fingerprint() && c.Result != attest.ResultMismatch {
			own = true
		}
	}
	full, err := n.st.Statements(ids) // ID and statement: all consensus and evidence read
	if err != nil {
		return RecipeInfo{}, err
	}
	cl := make([]consensus.Claim, 0, len(full))
	for _, c := range full {
		if c == nil {
			continue
		}
		st := c.Statement
		if to := trust.countAs(st.Builder, st.Timestamp); to != st.Builder {
			cp := *st
			cp.Builder = to
			st = &cp
		}
		cl = append(cl, consensus.Claim{ID: c.ID, Statement: st})
	}
	o := n.options()
	o.RecipeID = rc.Recipe.RecipeID
	rep := consensus.Evaluate(cl, trust, o)
	ev, err := n.evidence(full)
	if err != nil {
		return RecipeInfo{}, err
	}
	return RecipeInfo{Recipe: rc.Recipe, Report: rep, Bar: consensus.Bar(rep.Score, 10), Own: own, Evidence: ev, Via: trust.paths(rep)}, nil
}

// paths are the certification paths of the certified builders in a
// report (nil when none is certified).
func (t *trustView) paths(rep consensus.Report) map[string][]string {
	var out map[string][]string
	for _, g := range rep.Groups {
		for _, b := range g.Trusted {
			if p := t.via[b.Fingerprint]; len(p) > 0 {
				if out == nil {
					out = map[string][]string{}
				}
				out[b.Fingerprint] = p
			}
		}
	}
	return out
}

// evidence collects the buildinfo, log and lock CIDs a recipe's claims
// name, with how many builders name each and whether this node holds it.
func (n *Node) evidence(claims []*attest.Claim) (RecipeEvidence, error) {
	type kind struct {
		out   *[]EvidenceBlob
		index map[string]int
	}
	var ev RecipeEvidence
	kinds := []kind{{&ev.Buildinfo, map[string]int{}}, {&ev.Logs, map[string]int{}}, {&ev.Locks, map[string]int{}}}
	seen := map[string]bool{} // builder|kind|cid: a builder counts once per blob
	for _, c := range claims {
		if c == nil {
			continue
		}
		st := c.Statement
		for i, cid := range []string{st.BuildinfoCID, st.LogCID, st.LockCID} {
			if cid == "" {
				continue
			}
			k := kinds[i]
			if j, ok := k.index[cid]; ok {
				if key := fmt.Sprint(st.Builder, i, cid); !seen[key] {
					seen[key] = true
					(*k.out)[j].Builders++
				}
				continue
			}
			if len(*k.out) == 16 { // a flood of distinct CIDs: the first ones say enough
				continue
			}
			seen[fmt.Sprint(st.Builder, i, cid)] = true
			held, err := n.st.HasBlob(cid)
			if err != nil {
				return ev, err
			}
			k.index[cid] = len(*k.out)
			*k.out = append(*k.out, EvidenceBlob{CID: cid, Builders: 1, Held: held})
		}
	}
	return ev, nil
}

// Verify gives the consensus verdict for a file hash: SAFE TO INSTALL
// only when the recipe's trusted consensus reports exactly this hash for
// this file name.
func (n *Node) Verify(ctx context.Context, req VerifyRequest) (*VerifyResult, error) {
	if !vocab.IsSHA256Hex(req.SHA256) {
		return nil, Invalid(fmt.Errorf("sha256 %q is not 64 lower-case hex digits", req.SHA256))
	}
	if req.Package == "" {
		return n.verifyArtifact(ctx, req.SHA256)
	}
	if err := vocab.CheckFileName(req.FileName); err != nil {
		return nil, Invalid(err)
	}
	op := req.Opinion
	if op == "" {
		op = vocab.Vanilla
	}
	q := InfoQuery{Package: req.Package, DebianVersion: req.DebianVersion, Opinion: op, OpinionCID: req.OpinionCID, All: req.RecipeID != ""}
	info, err := n.Info(ctx, q)
	if IsNotFound(err) {
		return &VerifyResult{Verdict: consensus.Unverified, Reasons: []string{err.Error()}}, nil
	}
	if err != nil {
		return nil, err
	}
	var ri *RecipeInfo
	for i := range info.Recipes { // best-attested first
		if r := &info.Recipes[i]; req.RecipeID == "" || r.Recipe.RecipeID == req.RecipeID {
			ri = r
			break
		}
	}
	if ri == nil {
		return &VerifyResult{Verdict: consensus.Unverified, Reasons: []string{"no claims for recipe " + req.RecipeID}}, nil
	}
	v, reasons := ri.Report.VerdictFor(req.SHA256, req.FileName, n.options())
	out := &VerifyResult{Verdict: v, Reasons: reasons, Recipe: ri}
	if g := ri.Report.Consensus; g != nil {
		for _, a := range g.Artifacts {
			if a.Name == req.FileName {
				out.Expected = a.SHA256
			}
		}
	}
	return out, nil
}

// verifyArtifact answers for a bare hash (a file whose package, version
// and name cannot be read): which attested artifact has this hash, and
// the verdict of its recipe's consensus for it.
func (n *Node) verifyArtifact(ctx context.Context, sum string) (*VerifyResult, error) {
	scs, err := n.st.ByArtifact(sum)
	if err != nil {
		return nil, err
	}
	if len(scs) == 0 {
		return &VerifyResult{Verdict: consensus.Unverified, Reasons: []string{fmt.Sprintf("no builder attests a file with sha256 %s", sum)}}, nil
	}
	var best *VerifyResult
	seen := map[string]bool{}
	for _, sc := range scs {
		if seen[sc.RecipeID] {
			continue
		}
		seen[sc.RecipeID] = true
		c, ok, err := n.st.Get(sc.ID)
		if err != nil || !ok {
			continue
		}
		st := c.Statement
		name := ""
		for _, a := range st.Artifacts {
			if a.SHA256 == sum {
				name = a.Name
			}
		}
		if name == "" {
			continue
		}
		op := st.Opinion.Name
		if op == "" {
			op = vocab.Vanilla
		}
		vr, err := n.Verify(ctx, VerifyRequest{Package: st.Package, DebianVersion: st.DebianVersion, Opinion: op, RecipeID: sc.RecipeID, FileName: name, SHA256: sum})
		if err != nil {
			return nil, err
		}
		vr.File = name
		if best == nil || vr.Verdict == consensus.Safe {
			best = vr
		}
		if vr.Verdict == consensus.Safe {
			break
		}
	}
	if best == nil {
		return &VerifyResult{Verdict: consensus.Unverified, Reasons: []string{fmt.Sprintf("no readable claim names a file with sha256 %s", sum)}}, nil
	}
	return best, nil
}
