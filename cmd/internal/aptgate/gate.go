package aptgate

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/debfile"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// Kinds of package the gate tells apart.
const (
	KindLebowski  = "lebowski"  // a Lebowski build: exactly <debian>~<opinion>+N
	KindMalformed = "malformed" // has the form of a Lebowski build but is not one exactly
	KindRequired  = "required"  // listed in apt.require
	KindOther     = "debian"    // anything else: Debian's signature covers it
)

// Decision is the gate's answer for one .deb.
type Decision struct {
	Path    string       `json:"path"`
	Package string       `json:"package,omitempty"`
	Version string       `json:"version,omitempty"`
	Kind    string       `json:"kind"`
	Verdict core.Verdict `json:"verdict,omitempty"` // "" when not asked
	Allowed bool         `json:"allowed"`
	Reason  string       `json:"reason"`
	Next    string       `json:"next,omitempty"` // what to run next, when refused
}

// Line is the one line apt's output shows for the decision.
func (d Decision) Line() string {
	what := d.Path
	if d.Package != "" {
		what = d.Package + " " + d.Version
	}
	switch {
	case d.Allowed && d.Verdict == "":
		return fmt.Sprintf("lebowski: ok %s: %s", what, d.Reason)
	case d.Allowed:
		return fmt.Sprintf("lebowski: ok %s: %s — %s", what, d.Verdict, d.Reason)
	}
	line := fmt.Sprintf("lebowski: REFUSED %s: %s — %s", what, d.Verdict, d.Reason)
	if d.Next != "" {
		line += "; next: " + d.Next
	}
	return line
}

// Gate decides with the node's consensus under a policy. API is nil when
// the node could not be reached (NodeErr says why): Lebowski builds and
// required packages are then refused — the gate fails closed — and the
// others pass.
type Gate struct {
	Policy  config.AptPolicy
	API     core.API
	NodeErr error
}

// Check decides about one package apt is about to unpack: the .deb at
// a.Path, which apt installs as a.Package at a.NewVersion. Those two are
// empty when apt speaks hook protocol 1 or the file was named on the
// command line; the .deb's own Package and Version stand in for them.
//
// apt.allow and apt.require are matched against that binary package
// name — the name dpkg installs the file under — never against the
// Source field the file declares about itself. A file whose Package or
// Version differs from what apt asked for is refused.
func (g *Gate) Check(ctx context.Context, a Action) Decision {
	d := Decision{Path: a.Path, Package: a.Package, Version: a.NewVersion, Kind: KindOther}
	deb, sum, err := debfile.Read(ctx, a.Path)
	if err != nil && !debfile.IsDamaged(err) {
		d.Verdict, d.Reason = core.DoNotInstall, fmt.Sprintf("cannot read the file: %v", err)
		d.Next = "apt-get clean, then run apt again"
		return d
	}
	if err != nil {
		d.Verdict, d.Reason = core.DoNotInstall, err.Error()
		d.Next = "lebowski verify --no-rebuild " + a.Path
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			d.Reason = "interrupted: " + err.Error()
		}
		return d
	}
	if (a.Package != "" && deb.Package != a.Package) || (a.NewVersion != "" && deb.Version != a.NewVersion) {
		d.Verdict = core.DoNotInstall
		d.Reason = fmt.Sprintf("apt is installing %s %s from this file, but the file says it is %s %s", a.Package, a.NewVersion, deb.Package, deb.Version)
		d.Next = "apt-cache policy " + a.Package + " (which repository offers it); apt-get clean, then run apt again"
		return d
	}
	d.Package, d.Version = deb.Package, deb.Version
	name := deb.Package // == a.Package when apt said it
	bv, class, verr := vocab.ClassifyVersion(deb.Version)
	switch {
	case class == vocab.VersionMalformed:
		d.Kind = KindMalformed
	case class == vocab.VersionOpinion:
		d.Kind = KindLebowski
	case slices.Contains(g.Policy.Require, name):
		d.Kind = KindRequired
	}
	allowed := slices.Contains(g.Policy.Allow, name)
	if d.Kind == KindOther {
		d.Allowed, d.Reason = true, "not a Lebowski build (Debian's signature covers it)"
		return d
	}
	lebowski := d.Kind == KindLebowski || d.Kind == KindMalformed
	if lebowski && g.Policy.Lebowski == config.AptOff {
		d.Allowed, d.Reason = true, "apt.lebowski is off: not checked"
		return d
	}
	switch {
	case d.Kind == KindMalformed:
		// Nothing Lebowski builds carries this version: there is nothing
		// to ask the node, and it is not Debian's either.
		d.Verdict = core.DoNotInstall
		d.Reason = verr.Error() + "; no Lebowski builder makes such a version"
		d.Next = fmt.Sprintf("apt-cache policy %s (which repository offers it); lebowski info %s", name, deb.Source)
	case deb.Architecture != "all" && deb.Architecture != builder.DefaultArch:
		d.Verdict, d.Reason = core.DoNotInstall, fmt.Sprintf("built for %s, this node checks %s packages", deb.Architecture, builder.DefaultArch)
	case g.API == nil:
		d.Verdict = core.Unverified
		d.Reason = fmt.Sprintf("cannot ask the Lebowski node (%v), so it is not installed unverified", g.NodeErr)
		d.Next = "start lebowskid (systemctl start lebowskid) or check `lebowski status`"
	default:
		// deb.Source only picks which claims to look in: the verdict
		// binds the file name and sha256, so a false Source finds no
		// consensus for these bytes.
		req := core.DecideRequest{File: a.Path, SHA256: sum, Package: deb.Source, BinaryPackage: deb.Package, Version: deb.Version,
			DebianVersion: deb.DebianVersion, FileName: deb.FileName()}
		if d.Kind == KindLebowski {
			// The version names the opinion; any content of that name
			// counts, as the consensus decides which one trusted
			// builders built.
			req.DebianVersion = bv.Debian
			req.Opinion = &core.OpinionFacts{Package: deb.Source, Name: bv.Opinion, BinaryVersion: deb.Version}
		}
		vr, err := g.API.Decide(ctx, req)
		if err != nil {
			d.Verdict, d.Reason = core.Unverified, fmt.Sprintf("the node could not answer: %v", err)
			d.Next = "lebowski status"
		} else {
			d.Verdict = vr.Verdict
			d.Reason = firstReason(vr)
			if d.Kind == KindLebowski && vr.Verdict == core.Unverified {
				d.Reason += fmt.Sprintf("; version %s has the form of a Lebowski opinion build (opinion %s, revision %d) and no trusted builder attests it",
					deb.Version, bv.Opinion, bv.Revision)
			}
		}
	}
	if d.Verdict == core.Safe {
		d.Allowed = true
		return d
	}
	switch {
	case allowed:
		d.Allowed, d.Reason = true, d.Reason+" (installed anyway: listed in apt.allow)"
	case lebowski && g.Policy.Lebowski == config.AptWarn:
		d.Allowed, d.Reason = true, d.Reason+" (installed anyway: apt.lebowski is warn)"
	}
	if d.Next == "" && !d.Allowed {
		src := deb.Source
		if d.Kind == KindLebowski {
			src += " --opinion " + bv.Opinion
		}
		d.Next = fmt.Sprintf("lebowski info %s; lebowski verify %s", src, a.Path)
	}
	return d
}

func firstReason(vr *core.Decision) string {
	if len(vr.Reasons) == 0 {
		return string(vr.Verdict)
	}
	r := vr.Reasons[0]
	if vr.Verdict == core.DoNotInstall && vr.Expected != "" {
		r = fmt.Sprintf("sha256 differs from the consensus %s: %s", vr.Expected[:16]+"…", r)
	}
	return r
}

// CheckAll decides every action; ok is false when any was refused.
func (g *Gate) CheckAll(ctx context.Context, actions []Action) (out []Decision, ok bool) {
	ok = true
	for _, a := range actions {
		d := g.Check(ctx, a)
		ok = ok && d.Allowed
		out = append(out, d)
	}
	return out, ok
}
