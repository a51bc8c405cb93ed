// Package consensus derives, for one build recipe, what the claims a node
// holds say: which artifact hashes how many distinct builder keys reported,
// the 0–10 trust score and the install verdict for a file (DESIGN §6).
//
// It is pure: no I/O, no clock (Options.Now is injected), deterministic and
// independent of the order of its input. It works on claims that were
// already verified (signature, schema, recipe ID) by package attest.
// docs/TRUST.md documents the formula, its constants and its properties.
package consensus

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Claim is one verified claim as the node holds it.
type Claim struct {
	ID        string            // claim ID (CID of the envelope)
	Statement *attest.Statement // verified statement; nil claims are ignored
	Received  time.Time         // when this node first got it (tie-break only)
}

// Options tune Evaluate and VerdictFor. The zero value is usable except
// for Now, whose zero value makes recency count at its floor.
type Options struct {
	// Now is the evaluation time (injected; Evaluate never reads a clock).
	Now time.Time
	// Threshold is the lowest score that can be SAFE TO INSTALL; 0 means
	// DefaultThreshold. Use a small positive value to accept any score.
	Threshold float64
	// MinTrusted is the fewest agreeing trusted keys for SAFE TO INSTALL;
	// 0 (or less) means DefaultMinTrusted.
	MinTrusted int
	// Purity, when valid, overrides the purity declared in the claims (the
	// caller holds the opinion file whose CID is in the recipe).
	Purity vocab.Purity
	// RecipeID selects the recipe when claims span several; "" picks the
	// recipe with the most trusted keys (then the smallest ID).
	RecipeID string
}

func (o Options) withDefaults() Options {
	if o.Threshold == 0 || o.Threshold != o.Threshold { // 0 or NaN
		o.Threshold = DefaultThreshold
	}
	if o.MinTrusted <= 0 {
		o.MinTrusted = DefaultMinTrusted
	}
	return o
}

// BuilderClaim is the one counted claim of one builder key.
type BuilderClaim struct {
	Fingerprint string        `json:"fingerprint"`
	Level       attest.Trust  `json:"level"`
	Operator    string        `json:"operator,omitempty"` // from TrustSource
	PeerID      string        `json:"peer_id,omitempty"`
	ClaimID     string        `json:"claim_id"`
	Result      attest.Result `json:"result"`
	ArtifactKey string        `json:"artifact_key,omitempty"`
	Timestamp   time.Time     `json:"timestamp"`
	Received    time.Time     `json:"received"`
}

// Trusted reports whether the claim's key votes.
func (b BuilderClaim) Trusted() bool { return b.Level.Votes() }

// operatorKey is the identity used for diversity: the TrustSource operator
// when known, else the libp2p peer ID, else the key itself. Only trusted
// claims carry an Operator and only they are counted (Group.Operators);
// the node's trust view knows every voting key's operator, so there the
// peer ID fallback never applies.
func (b BuilderClaim) operatorKey() string {
	switch {
	case b.Operator != "":
		return "op:" + b.Operator
	case b.PeerID != "":
		return "peer:" + b.PeerID
	}
	return "key:" + b.Fingerprint
}

// Group is every key whose counted claim reported one artifact set.
type Group struct {
	ArtifactKey   string            `json:"artifact_key"`
	Artifacts     []attest.Artifact `json:"artifacts"` // sorted by name
	Trusted       []BuilderClaim    `json:"trusted"`   // sorted by fingerprint
	Unvetted      []BuilderClaim    `json:"unvetted"`  // sorted by fingerprint
	Operators     int               `json:"operators"` // distinct operators among Trusted
	Newest        time.Time         `json:"newest"`    // newest claim timestamp, any level
	NewestTrusted time.Time         `json:"newest_trusted"`
}

// hashFor returns the group's sha256 for the artifact called name.
func (g *Group) hashFor(name string) (string, bool) {
	for _, a := range g.Artifacts {
		if a.Name == name {
			return a.SHA256, true
		}
	}
	return "", false
}

// nameOfHash returns the name of the group's artifact with hash h.
func (g *Group) nameOfHash(h string) (string, bool) {
	for _, a := range g.Artifacts {
		if a.SHA256 == h {
			return a.Name, true
		}
	}
	return "", false
}

// Report is the consensus view of one recipe.
type Report struct {
	RecipeID      string       `json:"recipe_id"`
	Package       string       `json:"package"`
	Version       string       `json:"version"`
	DebianVersion string       `json:"debian_version"`
	Suite         string       `json:"suite"`
	Arch          string       `json:"arch"`
	Opinion       string       `json:"opinion,omitempty"` // opinion name; "" = vanilla
	Purity        vocab.Purity `json:"purity,omitempty"`  // "" with Vanilla, or undeclared
	Vanilla       bool         `json:"vanilla"`
	// Groups are sorted most trusted keys first, then most unvetted keys,
	// then by artifact key.
	Groups []Group `json:"groups"`
	// Consensus is the group with strictly the most trusted keys (it is
	// &Groups[0]); nil when no trusted key reported success or when the
	// top groups tie.
	Consensus *Group `json:"consensus,omitempty"`
	// Conflict: trusted keys disagree — a consensus with trusted dissent,
	// or a tie between groups that have trusted keys.
	Conflict   bool       `json:"conflict"`
	Score      float64    `json:"score"` // 0–10, one decimal
	Components Components `json:"components"`
	// Dissenters are trusted keys in non-consensus groups (every trusted
	// success key when there is no consensus) and trusted "unreproducible"
	// claims; sorted by fingerprint.
	Dissenters     []BuilderClaim `json:"dissenters"`
	Failed         []BuilderClaim `json:"failed"`         // any level, sorted by fingerprint
	Unreproducible []BuilderClaim `json:"unreproducible"` // any level, sorted by fingerprint
	// Equivocators are keys that count for nothing: detected here (two
	// success claims with different artifact keys) or flagged by the
	// TrustSource. Sorted.
	Equivocators []string `json:"equivocators"`
	// RedFlags are mismatch reports about this recipe (not from
	// distrusted keys): someone was given a file of it that differs from
	// what they expected. They never vote; trusted ones first, then
	// newest first.
	RedFlags []RedFlag `json:"red_flags,omitempty"`
	Ignored  int       `json:"ignored"` // claims dropped: malformed, other recipe, distrusted key
	Reasons  []string  `json:"reasons"` // human-readable explanation, one fact a line
}

// RedFlag is one mismatch report (attest.ResultMismatch).
type RedFlag struct {
	Fingerprint string       `json:"fingerprint"`
	Level       attest.Trust `json:"level"`
	ClaimID     string       `json:"claim_id"`
	File        string       `json:"file"`
	Observed    string       `json:"observed"` // sha256 of the file the reporter was given
	Expected    string       `json:"expected"` // sha256 it expected
	Reason      string       `json:"reason,omitempty"`
	Timestamp   time.Time    `json:"timestamp"`
}

// Trusted reports whether the reporter's key is trusted.
func (f RedFlag) Trusted() bool { return BuilderClaim{Level: f.Level}.Trusted() }

// entry is one input claim after the first checks.
type entry struct {
	c    Claim
	s    *attest.Statement
	fpr  string
	akey string // ArtifactKey for success claims
}

// newer is a total order on a key's claims: newest timestamp, then newest
// receipt, then content, so the pick does not depend on input order.
func newer(a, b *entry) bool {
	if !a.s.Timestamp.Equal(b.s.Timestamp) {
		return a.s.Timestamp.After(b.s.Timestamp)
	}
	if !a.c.Received.Equal(b.c.Received) {
		return a.c.Received.After(b.c.Received)
	}
	for _, p := range [][2]string{
		{a.c.ID, b.c.ID}, {string(a.s.Result), string(b.s.Result)}, {a.akey, b.akey},
		{a.s.PeerID, b.s.PeerID}, {a.s.Version, b.s.Version}, {string(a.s.Opinion.Purity), string(b.s.Opinion.Purity)},
		{a.s.Opinion.Name, b.s.Opinion.Name}, {a.s.Opinion.CID, b.s.Opinion.CID},
	} {
		if p[0] != p[1] {
			return p[0] > p[1]
		}
	}
	return false
}

// usable reports why a claim cannot be counted ("" = usable).
func usable(c Claim) string {
	s := c.Statement
	switch {
	case s == nil:
		return "no statement"
	case strings.TrimSpace(s.Builder) == "":
		return "no builder key"
	case s.Result == attest.ResultSuccess && len(s.Artifacts) == 0:
		return "success without artifacts"
	case s.Result == attest.ResultMismatch && (len(s.Artifacts) != 1 || len(s.Expected) != 1):
		return "mismatch report without its two hashes"
	case s.Result != attest.ResultSuccess && s.Result != attest.ResultFailed && s.Result != attest.ResultUnreproducible && s.Result != attest.ResultMismatch:
		return "unknown result"
	}
	return ""
}

// Evaluate derives the consensus, score and reasons for one recipe from
// claims. Claims should all be about one recipe; see Options.RecipeID and
// EvaluateAll otherwise. A nil trust treats every key as unvetted.
//
// It runs in named steps: sift usable claims, pick the recipe, keep its
// claims by key, give each key one vote, describe the recipe, group the
// votes by artifact set, decide consensus and conflict, then purity,
// score and reasons.
func Evaluate(claims []Claim, trust TrustSource, opt Options) Report {
	if trust == nil {
		trust = noTrust{}
	}
	opt = opt.withDefaults()
	entries, flags, malformed := sift(claims)
	r := Report{RecipeID: opt.RecipeID}
	if r.RecipeID == "" {
		r.RecipeID = pickRecipe(entries, trust)
	}
	lv := newLevels(trust)
	r.RedFlags = redFlags(flags, r.RecipeID, lv)
	sel := selectRecipe(entries, r.RecipeID, lv)
	r.Ignored = malformed + sel.otherRecipe + sel.distrusted
	v := oneVotePerKey(sel.byKey, trust)
	r.Equivocators = v.equivocators()
	describeRecipe(&r, v.counted, sel.byKey)
	groupVotes(&r, v.counted, lv, trust)
	decide(&r)
	var purityNote string
	r.Purity, purityNote = pickPurity(v.counted, lv.of, opt)
	r.Score = score(&r, opt)
	r.Reasons = reasons(&r, opt, purityNote, malformed, sel.otherRecipe, sel.distrusted, v.detected, v.flagged)
	return r
}

// sift keeps the usable claims, sets mismatch reports apart (they never
// vote) and counts the others.
func sift(claims []Claim) (entries, flags []entry, malformed int) {
	entries = make([]entry, 0, len(claims))
	for _, c := range claims {
		if usable(c) != "" {
			malformed++
			continue
		}
		e := entry{c: c, s: c.Statement, fpr: strings.ToUpper(strings.TrimSpace(c.Statement.Builder))}
		if e.s.Result == attest.ResultMismatch {
			flags = append(flags, e)
			continue
		}
		entries = append(entries, e)
	}
	return entries, flags, malformed
}

// redFlags lists the recipe's mismatch reports from keys that are not
// distrusted: trusted first, then newest first.
func redFlags(flags []entry, recipeID string, lv *levels) []RedFlag {
	var out []RedFlag
	for _, e := range flags {
		lvl := lv.of(e.fpr)
		if e.s.RecipeID != recipeID || lvl == attest.TrustDistrusted {
			continue
		}
		out = append(out, RedFlag{Fingerprint: e.fpr, Level: lvl, ClaimID: e.c.ID, File: e.s.Artifacts[0].Name,
			Observed: e.s.Artifacts[0].SHA256, Expected: e.s.Expected[0].SHA256, Reason: e.s.Reason, Timestamp: e.s.Timestamp})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Trusted() != b.Trusted() {
			return a.Trusted()
		}
		if !a.Timestamp.Equal(b.Timestamp) {
			return a.Timestamp.After(b.Timestamp)
		}
		return a.ClaimID < b.ClaimID
	})
	return out
}

// levels memoises the trust source's (normalized) levels.
type levels struct {
	trust TrustSource
	m     map[string]attest.Trust
}

func newLevels(t TrustSource) *levels { return &levels{trust: t, m: map[string]attest.Trust{}} }

func (l *levels) of(fpr string) attest.Trust {
	v, ok := l.m[fpr]
	if !ok {
		v = l.trust.Level(fpr).Normalize()
		l.m[fpr] = v
	}
	return v
}

// selection is the picked recipe's claims by key, and what was dropped.
type selection struct {
	byKey                   map[string][]*entry
	otherRecipe, distrusted int
}

// selectRecipe keeps the claims about recipeID from keys that are not
// distrusted, grouped by key.
func selectRecipe(entries []entry, recipeID string, lv *levels) selection {
	sel := selection{byKey: map[string][]*entry{}}
	for i := range entries {
		e := &entries[i]
		switch {
		case e.s.RecipeID != recipeID:
			sel.otherRecipe++
		case lv.of(e.fpr) == attest.TrustDistrusted:
			sel.distrusted++
		default:
			if e.s.Result == attest.ResultSuccess {
				e.akey = e.s.ArtifactKey()
			}
			sel.byKey[e.fpr] = append(sel.byKey[e.fpr], e)
		}
	}
	return sel
}

// votes is each key's one vote: its newest claim, unless the key
// equivocates (detected here, or flagged by the trust source).
type votes struct {
	counted           []*entry // sorted by fingerprint
	detected, flagged []string
}

func (v votes) equivocators() []string {
	out := append(append([]string{}, v.detected...), v.flagged...)
	sort.Strings(out)
	return out
}

func oneVotePerKey(byKey map[string][]*entry, trust TrustSource) votes {
	fprs := make([]string, 0, len(byKey))
	for f := range byKey {
		fprs = append(fprs, f)
	}
	sort.Strings(fprs)
	var v votes
	for _, f := range fprs {
		es := byKey[f]
		akeys := map[string]bool{}
		best := es[0]
		for _, e := range es {
			if e.akey != "" {
				akeys[e.akey] = true
			}
			if newer(e, best) {
				best = e
			}
		}
		switch {
		case len(akeys) > 1:
			v.detected = append(v.detected, f)
		case trust.Equivocating(f):
			v.flagged = append(v.flagged, f)
		default:
			v.counted = append(v.counted, best)
		}
	}
	return v
}

// describeRecipe fills the report's package fields from the newest counted
// claim (any claim of the recipe if none counts).
func describeRecipe(r *Report, counted []*entry, byKey map[string][]*entry) {
	var rep *entry
	for _, e := range counted {
		if rep == nil || newer(e, rep) {
			rep = e
		}
	}
	if rep == nil {
		for _, es := range byKey {
			for _, e := range es {
				if rep == nil || newer(e, rep) {
					rep = e
				}
			}
		}
	}
	if rep == nil {
		return
	}
	s := rep.s
	r.Package, r.Version, r.DebianVersion, r.Suite, r.Arch = s.Package, s.Version, s.DebianVersion, s.Suite, s.Arch
	r.Opinion = s.Opinion.Name
	r.Vanilla = s.Opinion.CID == "" // the opinion CID is part of the recipe
}

// groupVotes sorts the counted votes into artifact groups (most trusted
// keys first), failed and unreproducible.
func groupVotes(r *Report, counted []*entry, lv *levels, trust TrustSource) {
	groups := map[string]*Group{}
	for _, e := range counted {
		bc := BuilderClaim{
			Fingerprint: e.fpr, Level: lv.of(e.fpr), PeerID: e.s.PeerID, ClaimID: e.c.ID,
			Result: e.s.Result, ArtifactKey: e.akey, Timestamp: e.s.Timestamp, Received: e.c.Received,
		}
		if bc.Trusted() {
			bc.Operator = trust.Operator(e.fpr)
		}
		switch e.s.Result {
		case attest.ResultFailed:
			r.Failed = append(r.Failed, bc)
			continue
		case attest.ResultUnreproducible:
			r.Unreproducible = append(r.Unreproducible, bc)
			continue
		}
		g := groups[e.akey]
		if g == nil {
			g = &Group{ArtifactKey: e.akey, Artifacts: append([]attest.Artifact(nil), e.s.Artifacts...)}
			sort.Slice(g.Artifacts, func(i, j int) bool {
				a, b := g.Artifacts[i], g.Artifacts[j]
				return a.Name < b.Name || (a.Name == b.Name && a.SHA256 < b.SHA256)
			})
			groups[e.akey] = g
		}
		if bc.Timestamp.After(g.Newest) {
			g.Newest = bc.Timestamp
		}
		if bc.Trusted() {
			g.Trusted = append(g.Trusted, bc)
			if bc.Timestamp.After(g.NewestTrusted) {
				g.NewestTrusted = bc.Timestamp
			}
		} else {
			g.Unvetted = append(g.Unvetted, bc)
		}
	}
	for _, g := range groups {
		ops := map[string]bool{}
		for _, b := range g.Trusted {
			ops[b.operatorKey()] = true
		}
		g.Operators = len(ops)
		r.Groups = append(r.Groups, *g)
	}
	sort.Slice(r.Groups, func(i, j int) bool {
		a, b := &r.Groups[i], &r.Groups[j]
		if len(a.Trusted) != len(b.Trusted) {
			return len(a.Trusted) > len(b.Trusted)
		}
		if len(a.Unvetted) != len(b.Unvetted) {
			return len(a.Unvetted) > len(b.Unvetted)
		}
		return a.ArtifactKey < b.ArtifactKey
	})
	// counted is sorted by fingerprint, so members and lists already are.
}

// decide sets the consensus (the group with strictly the most trusted
// keys), the trusted dissenters and whether trusted keys conflict.
func decide(r *Report) {
	trustedGroups := 0
	for i := range r.Groups {
		if len(r.Groups[i].Trusted) > 0 {
			trustedGroups++
		}
	}
	tie := trustedGroups > 1 && len(r.Groups[1].Trusted) == len(r.Groups[0].Trusted)
	if trustedGroups > 0 && !tie {
		r.Consensus = &r.Groups[0]
	}
	for i := range r.Groups {
		if r.Consensus != nil && i == 0 {
			continue
		}
		r.Dissenters = append(r.Dissenters, r.Groups[i].Trusted...)
	}
	for _, b := range r.Unreproducible {
		if b.Trusted() {
			r.Dissenters = append(r.Dissenters, b)
		}
	}
	sort.Slice(r.Dissenters, func(i, j int) bool { return r.Dissenters[i].Fingerprint < r.Dissenters[j].Fingerprint })
	r.Conflict = tie || (r.Consensus != nil && len(r.Dissenters) > 0)
}

// score fills the components and returns the 0–10 score.
func score(r *Report, opt Options) float64 {
	c := &r.Components
	if r.Consensus != nil {
		c.TrustedAgree = len(r.Consensus.Trusted)
		c.Operators = r.Consensus.Operators
		c.Dissent = len(r.Dissenters)
		if !opt.Now.IsZero() {
			c.AgeKnown = true
			c.Age = opt.Now.Sub(r.Consensus.NewestTrusted)
		}
	}
	for _, b := range r.Failed {
		if b.Trusted() {
			c.TrustedFail++
		}
	}
	return computeScore(c, r.Consensus != nil, r.Purity, r.Vanilla)
}

// pickRecipe returns the best-ranked recipe among the claims (Rank).
func pickRecipe(entries []entry, trust TrustSource) string {
	idx := map[string]int{}
	var rs []RecipeVotes
	for _, e := range entries {
		i, ok := idx[e.s.RecipeID]
		if !ok {
			i = len(rs)
			idx[e.s.RecipeID] = i
			rs = append(rs, RecipeVotes{RecipeID: e.s.RecipeID})
		}
		rs[i].Builders = append(rs[i].Builders, e.fpr)
		if e.s.Timestamp.After(rs[i].Newest) {
			rs[i].Newest = e.s.Timestamp
		}
	}
	if len(rs) == 0 {
		return ""
	}
	Rank(rs, trust)
	return rs[0].RecipeID
}

// RecipeVotes is what ranking needs to know of one recipe.
type RecipeVotes struct {
	RecipeID string
	Builders []string  // fingerprints of the keys with a claim about it (repeats are fine)
	Newest   time.Time // newest claim
}

// Rank sorts recipes best-attested first: most distinct trusted,
// non-equivocating keys; then most distinct keys; then the newest claim;
// then the smallest recipe ID, so the order never depends on the input's.
// It is the one ranking of recipes: Evaluate uses it to pick a recipe, the
// node to choose which recipe `info` and `verify` show. Unvetted keys are
// free to create, so they only break ties between recipes with as many
// trusted votes.
func Rank(rs []RecipeVotes, trust TrustSource) {
	if trust == nil {
		trust = noTrust{}
	}
	type ranked struct {
		r            RecipeVotes
		trusted, all int
	}
	out := make([]ranked, len(rs))
	// One map lookup per builder and recipe: whether the key votes, and
	// the last recipe it was counted for (repeats within a recipe count once).
	type keyState struct {
		votes bool
		last  int
	}
	keys := map[string]*keyState{}
	for i, r := range rs {
		k := ranked{r: r}
		for _, f := range r.Builders {
			ks := keys[f]
			if ks == nil {
				ks = &keyState{votes: trust.Level(f).Normalize().Votes() && !trust.Equivocating(f), last: -1}
				keys[f] = ks
			}
			if ks.last == i {
				continue
			}
			ks.last = i
			k.all++
			if ks.votes {
				k.trusted++
			}
		}
		out[i] = k
	}
	slices.SortStableFunc(out, func(a, b ranked) int {
		switch {
		case a.trusted != b.trusted:
			return cmp.Compare(b.trusted, a.trusted)
		case a.all != b.all:
			return cmp.Compare(b.all, a.all)
		case !a.r.Newest.Equal(b.r.Newest):
			return b.r.Newest.Compare(a.r.Newest)
		}
		return strings.Compare(a.r.RecipeID, b.r.RecipeID)
	})
	for i := range out {
		rs[i] = out[i].r
	}
}

// pickPurity returns the recipe's purity: opt.Purity when valid, else the
// least pure purity declared by a counted trusted claim (any result), else
// by any counted claim. The note explains overrides and disagreements.
func pickPurity(counted []*entry, level func(string) attest.Trust, opt Options) (vocab.Purity, string) {
	if opt.Purity.Valid() {
		return opt.Purity, "purity from the opinion file"
	}
	seen := map[vocab.Purity]bool{}
	var worst vocab.Purity
	pick := func(trustedOnly bool) {
		for _, e := range counted {
			if trustedOnly && !level(e.fpr).Votes() {
				continue
			}
			if e.s.Opinion.CID == "" {
				continue // vanilla: no purity
			}
			p := e.s.Opinion.Purity
			if !p.Valid() {
				p = ""
			}
			if len(seen) == 0 || p.Rank() > worst.Rank() {
				worst = p
			}
			seen[p] = true
		}
	}
	pick(true)
	if len(seen) == 0 {
		pick(false)
	}
	if len(seen) > 1 {
		var ps []string
		for p := range seen {
			if p == "" {
				ps = append(ps, "undeclared")
			} else {
				ps = append(ps, string(p))
			}
		}
		sort.Strings(ps)
		return worst, "claims disagree on purity (" + strings.Join(ps, ", ") + "); using the least pure"
	}
	return worst, ""
}

// EvaluateAll splits claims by recipe and evaluates each one. Reports are
// sorted by recipe ID. opt.RecipeID is ignored.
func EvaluateAll(claims []Claim, trust TrustSource, opt Options) []Report {
	by := map[string][]Claim{}
	for _, c := range claims {
		id := ""
		if c.Statement != nil {
			id = c.Statement.RecipeID
		}
		by[id] = append(by[id], c)
	}
	ids := make([]string, 0, len(by))
	for id := range by {
		if id != "" {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	out := make([]Report, 0, len(ids))
	for _, id := range ids {
		o := opt
		o.RecipeID = id
		out = append(out, Evaluate(by[id], trust, o))
	}
	return out
}

// baseName strips directories from a file name given as a path.
func baseName(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		return ""
	}
	return path.Base(strings.ReplaceAll(name, "\\", "/"))
}

// fprList formats up to max fingerprints, then "and N more".
func fprList(bs []BuilderClaim, max int) string {
	var parts []string
	for i, b := range bs {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(bs)-max))
			break
		}
		parts = append(parts, b.Fingerprint)
	}
	return strings.Join(parts, ", ")
}
