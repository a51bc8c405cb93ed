package consensus

import (
	"fmt"
	"math"
	"strings"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Verdict is the answer to "may I install this file?".
type Verdict string

const (
	// Safe: the file's hash is the consensus hash, enough trusted keys
	// agree, nobody trusted dissents and the score reaches the threshold.
	Safe Verdict = "SAFE TO INSTALL"
	// DoNotInstall: trusted builders report a different hash for this file,
	// or trusted builders disagree about the recipe.
	DoNotInstall Verdict = "DO NOT INSTALL"
	// Unverified: not enough trusted evidence either way.
	Unverified Verdict = "UNVERIFIED"
)

// OK reports whether the verdict allows installing (CLI exit code 0).
func (v Verdict) OK() bool { return v == Safe }

// VerdictFor decides whether the file with the given sha256 (hex) and name
// (base name of the .deb; "" when unknown) may be installed, and says why.
// Only trusted keys decide; unvetted keys only appear in the reasons. opt
// supplies Threshold and MinTrusted (defaults as in Options).
//
// Rules, in order (docs/TRUST.md):
//   - no consensus and a tie between trusted groups → DO NOT INSTALL;
//   - no consensus otherwise (no trusted success claim) → UNVERIFIED;
//   - a consensus with any trusted dissent → DO NOT INSTALL;
//   - name known to the consensus and its hash differs → DO NOT INSTALL;
//   - hash not in the consensus artifacts (name not given or unknown to
//     the consensus) → UNVERIFIED;
//   - hash matches: SAFE TO INSTALL when at least MinTrusted trusted keys
//     agree and Score ≥ Threshold, UNVERIFIED otherwise.
func (r Report) VerdictFor(fileSHA256, fileName string, opt Options) (Verdict, []string) {
	v, out := r.verdictFor(fileSHA256, fileName, opt)
	if note := r.redFlagNote(strings.ToLower(strings.TrimSpace(fileSHA256)), v); note != "" {
		out = append(out, note)
	}
	return v, out
}

// redFlagNote says who reported this exact file as differing from what
// they expected. Red flags never change the verdict: a file trusted
// builders agree on stays SAFE, any other file is not SAFE anyway.
func (r Report) redFlagNote(h string, v Verdict) string {
	var trusted, other int
	var who []BuilderClaim
	for _, f := range r.RedFlags {
		if f.Observed != h {
			continue
		}
		if f.Trusted() {
			trusted++
			who = append(who, BuilderClaim{Fingerprint: f.Fingerprint, Level: f.Level})
		} else {
			other++
		}
	}
	if trusted+other == 0 {
		return ""
	}
	note := fmt.Sprintf("RED FLAG: this exact file was reported as differing from what its reporters expected by %s and %s", plural(trusted, "trusted key"), plural(other, "other key"))
	if len(who) > 0 {
		note += " (" + fprList(who, maxListed) + ")"
	}
	if v == Safe {
		note += "; red flags never outvote the trusted builders who reproduced it (docs/TRUST.md)"
	}
	return note
}

func (r Report) verdictFor(fileSHA256, fileName string, opt Options) (Verdict, []string) {
	opt = opt.withDefaults()
	h := strings.ToLower(strings.TrimSpace(fileSHA256))
	name := baseName(fileName)
	if !vocab.IsSHA256Hex(h) {
		return Unverified, []string{fmt.Sprintf("file hash %q is not a sha256 (64 hex digits): compute it with sha256sum", fileSHA256)}
	}
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	unvettedNote := func() {
		var um []BuilderClaim
		for i := range r.Groups {
			g := &r.Groups[i]
			if g == r.Consensus || len(g.Trusted) > 0 {
				continue
			}
			if _, ok := g.nameOfHash(h); ok {
				um = append(um, g.Unvetted...)
			}
		}
		if len(um) > 0 {
			add("the file's hash matches only claims by unvetted keys: %s (not counted; trust a key with `lebowski key trust` if you know its operator)", fprList(um, maxListed))
		}
	}
	trustedMatch := func() {
		for i := range r.Groups {
			g := &r.Groups[i]
			if len(g.Trusted) == 0 {
				continue
			}
			if _, ok := g.nameOfHash(h); ok {
				add("the file's hash is the one reported by %s: %s", plural(len(g.Trusted), "trusted key"), fprList(g.Trusted, maxListed))
				return
			}
		}
		add("the file's hash is not reported by any trusted key")
	}

	g := r.Consensus
	if g == nil {
		if r.Conflict {
			add("trusted builders disagree about this recipe and no hash has a majority: do not install until the conflict is resolved (compare builds with `lebowski diff`)")
			trustedMatch()
			return DoNotInstall, out
		}
		if len(r.Groups)+len(r.Failed)+len(r.Unreproducible) == 0 {
			add("no claims for this recipe")
		} else {
			add("no trusted builder reported a successful build of this recipe")
		}
		var ur []BuilderClaim
		for _, b := range r.Unreproducible {
			if b.Trusted() {
				ur = append(ur, b)
			}
		}
		if len(ur) > 0 {
			add("%s signed \"unreproducible\": %s", plural(len(ur), "trusted key"), fprList(ur, maxListed))
		}
		unvettedNote()
		return Unverified, out
	}

	if r.Conflict {
		add("trusted builders disagree: %s (%s) — do not install until the conflict is resolved", plural(len(r.Dissenters), "trusted dissent"), fprList(r.Dissenters, maxListed))
		trustedMatch()
		return DoNotInstall, out
	}

	n := len(g.Trusted)
	if want, named := g.hashFor(name); name != "" && named {
		if want != h {
			add("%s %s sha256 %s for %s; this file has %s", plural(n, "trusted builder"), vb(n, "reports", "report"), want, name, h)
			unvettedNote()
			return DoNotInstall, out
		}
	} else if an, ok := g.nameOfHash(h); ok {
		name = an
	} else {
		if name == "" {
			add("the file's sha256 is not among the artifacts trusted builders report for this recipe (no file name given to compare by name)")
		} else {
			add("the file's sha256 is not among the artifacts trusted builders report for this recipe, and none of them is called %s", name)
		}
		unvettedNote()
		return Unverified, out
	}

	add("the file's sha256 matches %s as reported by %s (%s)", name, plural(n, "trusted builder"), plural(g.Operators, "operator"))
	v := Safe
	if n < opt.MinTrusted {
		v = Unverified
		add("only %d of the %d trusted builders needed agree", n, opt.MinTrusted)
	}
	if r.Score < opt.Threshold {
		v = Unverified
		add("score %.1f/10 is below the threshold %g", r.Score, opt.Threshold)
	} else {
		add("score %.1f/10 reaches the threshold %g", r.Score, opt.Threshold)
	}
	return v, out
}

// MaxBarWidth bounds Bar's width.
const MaxBarWidth = 200

// Bar draws the score as "████████░░ 8/10": of width cells, floor(score)×width/10
// are full blocks and the rest light shades, then the score rounded down.
// Scores outside [0,10] (and NaN) are clamped; width ≤ 0 returns only
// "8/10"; widths above MaxBarWidth are drawn MaxBarWidth wide.
func Bar(score float64, width int) string {
	if math.IsNaN(score) || score < 0 {
		score = 0
	}
	if score > 10 {
		score = 10
	}
	s := int(math.Floor(score))
	label := fmt.Sprintf("%d/10", s)
	if width <= 0 {
		return label
	}
	width = min(width, MaxBarWidth)
	full := s * width / 10
	return strings.Repeat("█", full) + strings.Repeat("░", width-full) + " " + label
}
