package consensus

import (
	"fmt"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
)

// maxListed bounds the fingerprints one reason line names.
const maxListed = 5

// plural returns "1 builder" / "3 builders".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// vb picks the verb form agreeing with n.
func vb(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ago formats an age for humans: "45s", "12m", "5h", "3d".
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future (clock skew; counted as fresh)"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

// reasons explains the report, one fact a line, in a fixed order.
func reasons(r *Report, opt Options, purityNote string, malformed, otherRecipe, distrusted int, detected, flagged []string) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	c := &r.Components

	counted := len(r.Failed) + len(r.Unreproducible)
	for _, g := range r.Groups {
		counted += len(g.Trusted) + len(g.Unvetted)
	}
	if counted == 0 && len(r.Equivocators) == 0 {
		add("no claims for this recipe")
	}

	// Agreement.
	var unvettedOther int
	switch {
	case r.Consensus != nil:
		g := r.Consensus
		own := ""
		for _, b := range g.Trusted {
			if b.Level == attest.TrustOwn {
				own = ", including your own build"
			}
		}
		if len(g.Trusted) == 1 {
			add("1 trusted builder reports this hash (1 operator%s)", own)
		} else {
			add("%d trusted builders agree (%s%s)", len(g.Trusted), plural(g.Operators, "operator"), own)
		}
		if n := len(g.Unvetted); n > 0 {
			add("%s also %s this hash (not counted)", plural(n, "unvetted key"), vb(n, "reports", "report"))
		}
		for _, o := range r.Groups[1:] {
			unvettedOther += len(o.Unvetted)
		}
	case r.Conflict:
		var counts []any
		format := "conflict: trusted builders disagree and no hash has a majority (trusted keys per hash:"
		for _, g := range r.Groups {
			if len(g.Trusted) > 0 {
				format += " %d"
				counts = append(counts, len(g.Trusted))
			}
		}
		add(format+") — score 0", counts...)
		for _, g := range r.Groups {
			unvettedOther += len(g.Unvetted)
		}
	default:
		add("no trusted builder reported a successful build — score 0")
		for _, g := range r.Groups {
			unvettedOther += len(g.Unvetted)
		}
	}
	if unvettedOther > 0 {
		add("%s %s other hashes (not counted)", plural(unvettedOther, "unvetted key"), vb(unvettedOther, "reports", "report"))
	}

	// Recency.
	if r.Consensus != nil {
		switch {
		case !c.AgeKnown:
			add("no evaluation time given: recency counted at its floor ×%.2f", RecencyFloor)
		case c.Recency < 1:
			add("newest agreeing claim %s — recency ×%.2f", ago(c.Age), c.Recency)
		default:
			add("newest agreeing claim %s", ago(c.Age))
		}
	}

	// Purity.
	pf := purityFactor(r.Purity, r.Vanilla)
	switch {
	case r.Vanilla:
		add("vanilla Debian build (no opinion)")
	case r.Purity == "":
		add("purity not declared — counted as patches ×%.2f", PurityFactorPatches)
	case pf < 1:
		add("purity %s ×%.2f", r.Purity, pf)
	default:
		add("purity %s", r.Purity)
	}
	if purityNote != "" {
		add("%s", purityNote)
	}

	// Dissent.
	var hashDissent, unrepro []BuilderClaim
	for _, b := range r.Dissenters {
		if b.Result == attest.ResultUnreproducible {
			unrepro = append(unrepro, b)
		} else {
			hashDissent = append(hashDissent, b)
		}
	}
	capNote := ""
	if r.Consensus != nil {
		capNote = fmt.Sprintf(" — score capped at %g", DissentCap)
	}
	if r.Consensus != nil && len(hashDissent) > 0 {
		add("%s: %s %s a different hash%s", plural(len(hashDissent), "trusted dissent"), fprList(hashDissent, maxListed), vb(len(hashDissent), "reports", "report"), capNote)
	}
	if len(unrepro) > 0 {
		add("%s: %s signed \"unreproducible\"%s", plural(len(unrepro), "trusted dissent"), fprList(unrepro, maxListed), capNote)
	}

	// Failures.
	var tf, uf int
	var tfl []BuilderClaim
	for _, b := range r.Failed {
		if b.Trusted() {
			tf++
			tfl = append(tfl, b)
		} else {
			uf++
		}
	}
	if tf > 0 {
		add("%s %s the build failed: %s (×%.2f)", plural(tf, "trusted builder"), vb(tf, "reports", "report"), fprList(tfl, maxListed), c.Failures)
	}
	if uf > 0 {
		add("%s %s the build failed (not counted)", plural(uf, "unvetted key"), vb(uf, "reports", "report"))
	}
	var uu int
	for _, b := range r.Unreproducible {
		if !b.Trusted() {
			uu++
		}
	}
	if uu > 0 {
		add("%s signed \"unreproducible\" (not counted)", plural(uu, "unvetted key"))
	}

	// Ignored keys and claims.
	for _, f := range detected {
		add("equivocating key %s ignored: it signed different hashes for this recipe", f)
	}
	for _, f := range flagged {
		add("key %s ignored: known to equivocate", f)
	}
	if distrusted > 0 {
		add("%s by distrusted keys ignored", plural(distrusted, "claim"))
	}
	if otherRecipe > 0 {
		add("%s for other recipes ignored", plural(otherRecipe, "claim"))
	}
	if malformed > 0 {
		add("%s ignored (no statement, no builder, unknown result or success without artifacts)", plural(malformed, "malformed claim"))
	}

	// The formula.
	if r.Consensus != nil {
		line := fmt.Sprintf("score %.1f/10 = 10 × (%.1f×volume %.2f + %.1f×diversity %.2f) × recency %.2f × purity %.2f × failures %.2f",
			r.Score, WeightVolume, c.Volume, WeightDiversity, c.Diversity, c.Recency, c.Purity, c.Failures)
		if c.Capped && c.Raw > DissentCap {
			line += fmt.Sprintf(" = %.2f, capped at %g", c.Raw, DissentCap)
		}
		out = append(out, line)
	}
	return out
}
