package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/store"
)

// Service answers the read and write operations of a node from its store.
// The CLI calls it directly when no daemon runs; lebowskid serves the same
// operations over its unix-socket API, so both give identical answers.
type Service struct {
	Store *store.Store
	// Own is this node's builder fingerprint ("" if none).
	Own string
	// Trusted lists fingerprints the operator trusts by configuration, in
	// addition to keys marked trusted in the store.
	Trusted []string
	// Threshold and MinTrusted tune SAFE TO INSTALL (0 = defaults).
	Threshold  float64
	MinTrusted int
	Log        *slog.Logger
	Now        func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) opts() consensus.Options {
	return consensus.Options{Now: s.now(), Threshold: s.Threshold, MinTrusted: s.MinTrusted}
}

// storeTrust is the operator's trust: keys marked in the store, keys
// listed in the configuration, and this node's own key.
type storeTrust struct {
	levels map[string]attest.Trust
	equiv  map[string]bool
}

// Trust loads the current trust view (one read of the keys bucket).
func (s *Service) Trust() (consensus.TrustSource, error) {
	keys, err := s.Store.Keys()
	if err != nil {
		return nil, err
	}
	t := storeTrust{levels: map[string]attest.Trust{}, equiv: map[string]bool{}}
	for _, k := range keys {
		switch k.Trust {
		case attest.TrustTrusted:
			t.levels[k.Fingerprint] = attest.TrustTrusted
		case attest.TrustOwn:
			t.levels[k.Fingerprint] = attest.TrustOwn
		case attest.TrustDistrusted:
			t.levels[k.Fingerprint] = attest.TrustDistrusted
		}
		if k.Equivocating {
			t.equiv[k.Fingerprint] = true
		}
	}
	for _, f := range s.Trusted {
		f = strings.ToUpper(f)
		if t.levels[f] != attest.TrustDistrusted {
			t.levels[f] = attest.TrustTrusted
		}
	}
	if s.Own != "" {
		t.levels[s.Own] = attest.TrustOwn
	}
	return t, nil
}

func (t storeTrust) Level(f string) attest.Trust { return t.levels[f] }
func (t storeTrust) Equivocating(f string) bool          { return t.equiv[f] }
func (t storeTrust) Operator(string) string              { return "" }

// RecipeInfo is the consensus view of one recipe.
type RecipeInfo struct {
	Recipe store.RecipeSummary `json:"recipe"`
	Report consensus.Report    `json:"report"`
	Bar    string              `json:"bar"`
	Own    bool                `json:"own_build"` // this node built it
}

// InfoResult answers `lebowski info PKG`.
type InfoResult struct {
	Package string       `json:"package"`
	Recipes []RecipeInfo `json:"recipes"`
}

// ErrNotFound means the store holds no claim for what was asked.
var ErrNotFound = errors.New("not found")

// Info evaluates the recipes of pkg (optionally one Debian version and/or
// one opinion name; "vanilla" selects builds without opinion). Recipes are
// ranked by their index summaries (distinct builders, then newest); only
// the best one is evaluated — decoding its full claims — unless all is set.
func (s *Service) Info(ctx context.Context, pkg, debVersion, opinion string, all bool) (*InfoResult, error) {
	rcs, err := s.Store.ByPackage(pkg, debVersion)
	if err != nil {
		return nil, err
	}
	kept := rcs[:0]
	for _, rc := range rcs {
		if opinion == "" || opinionMatches(rc.Recipe.Opinion.Name, opinion) {
			kept = append(kept, rc)
		}
	}
	if len(kept) == 0 {
		what := pkg
		if debVersion != "" {
			what += " " + debVersion
		}
		if opinion != "" {
			what += " (opinion " + opinion + ")"
		}
		return nil, fmt.Errorf("%w: no claims for %s in this node's store (import some with `lebowski claims import`, or wait for peers)", ErrNotFound, what)
	}
	trust, err := s.Trust()
	if err != nil {
		return nil, err
	}
	// Rank by distinct trusted, non-equivocating builders first: unvetted
	// keys are free to create, so a flood of them for another recipe must
	// not displace the recipe trusted builders agree on (docs/SECURITY.md).
	votes := make(map[string]int, len(kept))
	for _, rc := range kept {
		seen := map[string]bool{}
		for _, c := range rc.Claims {
			if l := trust.Level(c.Builder); (l == attest.TrustTrusted || l == attest.TrustOwn) && !trust.Equivocating(c.Builder) {
				seen[c.Builder] = true
			}
		}
		votes[rc.Recipe.RecipeID] = len(seen)
	}
	sort.SliceStable(kept, func(i, j int) bool {
		a, b := kept[i].Recipe, kept[j].Recipe
		if va, vb := votes[a.RecipeID], votes[b.RecipeID]; va != vb {
			return va > vb
		}
		if a.Builders != b.Builders {
			return a.Builders > b.Builders
		}
		return a.Newest.After(b.Newest)
	})
	if !all {
		kept = kept[:1]
	}
	res := &InfoResult{Package: pkg}
	for _, rc := range kept {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ids := make([]string, len(rc.Claims))
		own := false
		for i, c := range rc.Claims {
			ids[i] = c.ID
			if c.Builder == s.Own && s.Own != "" {
				own = true
			}
		}
		full, err := s.Store.GetMany(ids)
		if err != nil {
			return nil, err
		}
		cl := make([]consensus.Claim, 0, len(full))
		for _, c := range full {
			if c != nil {
				cl = append(cl, consensus.Claim{ID: c.ID, Statement: c.Statement})
			}
		}
		o := s.opts()
		o.RecipeID = rc.Recipe.RecipeID
		rep := consensus.Evaluate(cl, trust, o)
		res.Recipes = append(res.Recipes, RecipeInfo{Recipe: rc.Recipe, Report: rep, Bar: consensus.Bar(rep.Score, 10), Own: own})
	}
	return res, nil
}

func opinionMatches(name, want string) bool {
	if want == "vanilla" {
		return name == ""
	}
	return name == want
}

// VerifyRequest asks for the verdict on one file.
type VerifyRequest struct {
	Package       string `json:"package"`        // source package
	BinaryPackage string `json:"binary_package"` // for messages
	DebianVersion string `json:"debian_version"`
	Opinion       string `json:"opinion"` // name; "" = vanilla
	// OpinionCID, when set, restricts the verdict to recipes built from
	// exactly this opinion content: claims about a tampered opinion of the
	// same name never decide (docs/SECURITY.md).
	OpinionCID string `json:"opinion_cid,omitempty"`
	RecipeID   string `json:"recipe_id,omitempty"`
	FileName   string `json:"file_name"`
	SHA256     string `json:"sha256"`
}

// VerifyResult is the verdict and its evidence.
type VerifyResult struct {
	Verdict consensus.Verdict `json:"verdict"`
	Reasons []string          `json:"reasons"`
	Recipe  *RecipeInfo       `json:"recipe,omitempty"`
	// Expected is the consensus hash for the file name, if any.
	Expected string `json:"expected,omitempty"`
}

// Verify gives the consensus verdict for a file hash.
func (s *Service) Verify(ctx context.Context, req VerifyRequest) (*VerifyResult, error) {
	op := req.Opinion
	if op == "" {
		op = "vanilla"
	}
	info, err := s.Info(ctx, req.Package, req.DebianVersion, op, req.RecipeID != "" || req.OpinionCID != "")
	if errors.Is(err, ErrNotFound) {
		return &VerifyResult{Verdict: consensus.Unverified, Reasons: []string{err.Error()}}, nil
	}
	if err != nil {
		return nil, err
	}
	var ri *RecipeInfo
	for i := range info.Recipes { // best-attested first
		r := &info.Recipes[i]
		if (req.RecipeID == "" || r.Recipe.RecipeID == req.RecipeID) && (req.OpinionCID == "" || r.Recipe.Opinion.CID == req.OpinionCID) {
			ri = r
			break
		}
	}
	if ri == nil {
		why := "no claims for recipe " + req.RecipeID
		if req.OpinionCID != "" {
			why = fmt.Sprintf("no claims for %s built from opinion %s with content %s (claims under that name use other opinion content)", req.Package, op, req.OpinionCID)
		}
		return &VerifyResult{Verdict: consensus.Unverified, Reasons: []string{why}}, nil
	}
	v, reasons := ri.Report.VerdictFor(req.SHA256, req.FileName, s.opts())
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

// ImportResult is the outcome of importing one claim.
type ImportResult struct {
	ID     string `json:"id,omitempty"`
	Status string `json:"status"` // new, duplicate, equivocation, rejected
	Error  string `json:"error,omitempty"`
}

// ImportClaims verifies and stores wire envelopes.
func (s *Service) ImportClaims(ctx context.Context, wires [][]byte) ([]ImportResult, error) {
	res, err := s.Store.VerifyAndIngest(ctx, attest.VerifyOptions{Now: s.now()}, wires...)
	if err != nil {
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

// ClaimRow is one claim in a listing.
type ClaimRow struct {
	store.StoredClaim
	Package string `json:"package"`
	Version string `json:"version"`
	Opinion string `json:"opinion,omitempty"`
}

// Claims lists the claims of a package (all if pkg is "").
func (s *Service) Claims(ctx context.Context, pkg string) ([]ClaimRow, error) {
	pkgs := []string{pkg}
	if pkg == "" {
		var err error
		if pkgs, err = s.Store.Packages(); err != nil {
			return nil, err
		}
	}
	var out []ClaimRow
	for _, p := range pkgs {
		rcs, err := s.Store.ByPackage(p, "")
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

// Keys lists known builder keys with the effective trust.
func (s *Service) Keys() ([]store.KeyInfo, error) {
	keys, err := s.Store.Keys()
	if err != nil {
		return nil, err
	}
	for i := range keys {
		keys[i].PublicKey = nil
		for _, f := range s.Trusted {
			if strings.EqualFold(f, keys[i].Fingerprint) && keys[i].Trust != attest.TrustDistrusted && keys[i].Trust != attest.TrustOwn {
				keys[i].Trust = attest.TrustTrusted
				keys[i].Note = strings.TrimSpace(keys[i].Note + " (trusted by config)")
			}
		}
	}
	return keys, nil
}

// ImportKey stores a public key (armored or binary) with a trust level.
func (s *Service) ImportKey(pub []byte, trust attest.Trust, source string) (store.KeyInfo, error) {
	return s.Store.PutKey(pub, trust, source)
}

// SetTrust changes a key's trust.
func (s *Service) SetTrust(fpr string, trust attest.Trust, note string) error {
	return s.Store.SetTrust(strings.ToUpper(fpr), trust, note)
}
