package aptgate

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/debfile"
	"github.com/lebowski-dist/lebowski/cmd/internal/config"
	"github.com/lebowski-dist/lebowski/cmd/internal/core"
)

// Kinds of package the gate tells apart.
const (
	KindLebowski = "lebowski" // a Lebowski build: ~<opinion>+N version
	KindRequired = "required" // listed in apt.require
	KindOther    = "debian"   // anything else: Debian's signature covers it
)

// Decision is the gate's answer for one .deb.
type Decision struct {
	Path    string            `json:"path"`
	Package string            `json:"package,omitempty"`
	Version string            `json:"version,omitempty"`
	Kind    string            `json:"kind"`
	Verdict consensus.Verdict `json:"verdict,omitempty"` // "" when not asked
	Allowed bool              `json:"allowed"`
	Reason  string            `json:"reason"`
	Next    string            `json:"next,omitempty"` // what to run next, when refused
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

// Check decides about the .deb at path.
func (g *Gate) Check(ctx context.Context, path string) Decision {
	d := Decision{Path: path, Kind: KindOther}
	deb, sum, err := debfile.Read(ctx, path)
	if err != nil && !debfile.IsDamaged(err) {
		d.Verdict, d.Reason = consensus.DoNotInstall, fmt.Sprintf("cannot read the file: %v", err)
		d.Next = "apt-get clean, then run apt again"
		return d
	}
	if err != nil {
		d.Verdict, d.Reason = consensus.DoNotInstall, err.Error()
		d.Next = "lebowski verify --no-rebuild " + path
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			d.Reason = "interrupted: " + err.Error()
		}
		return d
	}
	d.Package, d.Version = deb.Package, deb.Version
	switch {
	case deb.Opinion != "":
		d.Kind = KindLebowski
	case slices.Contains(g.Policy.Require, deb.Package) || slices.Contains(g.Policy.Require, deb.Source):
		d.Kind = KindRequired
	}
	allowed := slices.Contains(g.Policy.Allow, deb.Package) || slices.Contains(g.Policy.Allow, deb.Source)
	if d.Kind == KindOther {
		d.Allowed, d.Reason = true, "not a Lebowski build (Debian's signature covers it)"
		return d
	}
	if d.Kind == KindLebowski && g.Policy.Lebowski == config.AptOff {
		d.Allowed, d.Reason = true, "apt.lebowski is off: not checked"
		return d
	}
	if deb.Architecture != "all" && deb.Architecture != builder.DefaultArch {
		d.Verdict, d.Reason = consensus.DoNotInstall, fmt.Sprintf("built for %s, this node checks %s packages", deb.Architecture, builder.DefaultArch)
	} else if g.API == nil {
		d.Verdict = consensus.Unverified
		d.Reason = fmt.Sprintf("cannot ask the Lebowski node (%v), so it is not installed unverified", g.NodeErr)
		d.Next = "start lebowskid (systemctl start lebowskid) or check `lebowski status`"
	} else {
		op := deb.Opinion
		if op == "" {
			op = vocab.Vanilla
		}
		vr, err := g.API.Verify(ctx, core.VerifyRequest{Package: deb.Source, BinaryPackage: deb.Package, DebianVersion: deb.DebianVersion,
			Opinion: op, FileName: deb.FileName(), SHA256: sum})
		if err != nil {
			d.Verdict, d.Reason = consensus.Unverified, fmt.Sprintf("the node could not answer: %v", err)
			d.Next = "lebowski status"
		} else {
			d.Verdict = vr.Verdict
			d.Reason = firstReason(vr)
		}
	}
	if d.Verdict == consensus.Safe {
		d.Allowed = true
		return d
	}
	switch {
	case allowed:
		d.Allowed, d.Reason = true, d.Reason+" (installed anyway: listed in apt.allow)"
	case d.Kind == KindLebowski && g.Policy.Lebowski == config.AptWarn:
		d.Allowed, d.Reason = true, d.Reason+" (installed anyway: apt.lebowski is warn)"
	}
	if d.Next == "" && !d.Allowed {
		src := deb.Source
		if deb.Opinion != "" {
			src += " --opinion " + deb.Opinion
		}
		d.Next = fmt.Sprintf("lebowski info %s; lebowski verify %s", src, path)
	}
	return d
}

func firstReason(vr *core.VerifyResult) string {
	if len(vr.Reasons) == 0 {
		return string(vr.Verdict)
	}
	r := vr.Reasons[0]
	if vr.Verdict == consensus.DoNotInstall && vr.Expected != "" {
		r = fmt.Sprintf("sha256 differs from the consensus %s: %s", vr.Expected[:16]+"…", r)
	}
	return r
}

// CheckAll decides every action; ok is false when any was refused.
func (g *Gate) CheckAll(ctx context.Context, actions []Action) (out []Decision, ok bool) {
	ok = true
	for _, a := range actions {
		d := g.Check(ctx, a.Path)
		if d.Package == "" {
			d.Package, d.Version = a.Package, a.NewVersion
		}
		ok = ok && d.Allowed
		out = append(out, d)
	}
	return out, ok
}
