package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/debfile"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
)

// openPackage hashes and inspects the file verify was given. A path
// that does not name a regular file is a usage error; a file that cannot
// be read or is not an intact .deb returns its hash (when readable) and
// the reason, and verify decides DO NOT INSTALL.
func openPackage(ctx context.Context, path string) (deb *debfile.Info, sum string, bad error, err error) {
	deb, sum, err = debfile.Read(ctx, path)
	switch {
	case err == nil:
		return deb, sum, nil, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", nil, usageErr("%s: no such file", path)
	case errors.Is(err, debfile.ErrNotRegular):
		return nil, "", nil, usageErr("%v: give verify a .deb file", err)
	case ctx.Err() != nil:
		return nil, "", nil, ctx.Err()
	case debfile.IsDamaged(err):
		return deb, sum, err, nil // deb: the intact control data, if any
	}
	return nil, "", fmt.Errorf("cannot read the file: %w", err), nil
}

func newVerifyCmd(g *globals) *cobra.Command {
	var f buildFlags
	var rebuild, noRebuild, noReport bool
	cmd := &cobra.Command{
		Use:   "verify FILE.deb",
		Short: "Rebuild a package and compare: SAFE TO INSTALL or DO NOT INSTALL",
		Long: `Find the recipe of a .deb (package, version and opinion from its control
file, or --opinion), rebuild it in the pinned container (or reuse this node's
earlier build of the same recipe unless --rebuild), compare SHA256 with the
file and with what trusted builders attest.

Exit codes: 0 SAFE TO INSTALL, 1 DO NOT INSTALL or UNVERIFIED, 2 bad input,
3 environment error (podman missing …).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			path := args[0]
			deb, sum, bad, err := openPackage(ctx, path)
			if err != nil {
				return err
			}
			if bad != nil {
				return g.verifyUnreadable(ctx, path, sum, bad, deb, !noReport)
			}
			if deb.Architecture != "all" && deb.Architecture != builder.DefaultArch {
				return g.verifyUnreadable(ctx, path, sum, fmt.Errorf("built for %s; this node installs and rebuilds %s packages", deb.Architecture, builder.DefaultArch), nil, false)
			}
			// A version shaped like an opinion build that does not parse
			// exactly (2.10-3~o3+01, ~o3+1~x, ~o3+1+b1) is no build anyone
			// made under Lebowski's rules: refused as the apt hook refuses
			// it (vocab.ClassifyVersion), with no rebuild and no red flag.
			if _, class, verr := vocab.ClassifyVersion(deb.Version); class == vocab.VersionMalformed && f.opinion == "" {
				return g.verifyUnreadable(ctx, path, sum, fmt.Errorf("version %s: %v; no Lebowski build carries such a version and the apt hook refuses it (pass --opinion to check it against one)", deb.Version, verr), nil, false)
			}
			opName := f.opinion
			if opName == "" {
				opName = deb.Opinion
			}
			op, err := g.loadOpinion(ctx, deb.Source, opName)
			if err != nil {
				return err
			}
			if op == nil && deb.Opinion != "" && f.opinion == "" {
				cfg, err := g.config()
				if err != nil {
					return err
				}
				return usageErr("%s looks built under opinion %q, which is not in %s; pass --opinion (or --opinion vanilla for a Debian version that only looks like one)", path, deb.Opinion, cfg.OpinionsDir)
			}
			if op == nil {
				deb.DebianVersion, deb.Opinion = deb.Version, ""
			}
			req := core.DecideRequest{File: path, SHA256: sum, Package: deb.Source, BinaryPackage: deb.Package, Version: deb.Version,
				DebianVersion: deb.DebianVersion, FileName: deb.FileName()}
			if op != nil {
				req.Opinion = &core.OpinionFacts{Package: op.Package, Name: op.Name, CID: op.CID(), BinaryVersion: op.BinaryVersion().String()}
			}
			// This node's own rebuild (reused unless --rebuild), unless the
			// file's version already contradicts the opinion.
			if !noRebuild && (op == nil || req.Opinion.BinaryVersion == deb.Version) {
				own, recipe, err := g.ownBuild(ctx, &f, deb, op, req.FileName, rebuild)
				if err != nil {
					return err
				}
				req.Own = &core.OwnBuild{}
				if own != nil {
					req.Own.SHA256 = own.SHA256
				}
				if recipe != nil {
					req.Own.RecipeID, req.Own.SourceSHA256, req.Own.ImageDigest = recipe.ID(), recipe.SourceSHA256, recipe.ImageDigest
				}
			}
			return g.decideFile(ctx, req, !noReport)
		},
	}
	cmd.Flags().StringVar(&f.opinion, "opinion", "", "opinion name (default: from the package version, e.g. 2.10-3~o3+1)")
	cmd.Flags().BoolVar(&rebuild, "rebuild", false, "rebuild even if this node already built the recipe")
	cmd.Flags().BoolVar(&noRebuild, "no-rebuild", false, "do not rebuild: decide from the claims in the store only")
	cmd.Flags().BoolVar(&noReport, "no-report", false, "do not sign and publish a red flag when the file differs from the consensus or the own rebuild")
	g.addBuildFlags(cmd, &f)
	return cmd
}

// verifyUnreadable decides DO NOT INSTALL for a file verify cannot treat
// as a package for this machine, saying why and what the network attests:
// for the package and version its intact control data names (deb), else
// for its bare hash. A damaged file that differs from the consensus hash
// of its name is reported as a red flag when report is set.
func (g *globals) verifyUnreadable(ctx context.Context, path, sum string, why error, deb *debfile.Info, report bool) error {
	req := core.DecideRequest{File: path, SHA256: sum, Problem: why.Error(), Damaged: report}
	if deb != nil {
		req.Package, req.BinaryPackage, req.Version, req.DebianVersion, req.FileName = deb.Source, deb.Package, deb.Version, deb.DebianVersion, deb.FileName()
		if deb.Opinion != "" {
			req.Opinion = &core.OpinionFacts{Name: deb.Opinion}
		}
	}
	return g.decideFile(ctx, req, report)
}

// decideFile asks the node for the decision about one file, renders it,
// signs the red flag it warrants when report is set, and exits 0 only
// for SAFE TO INSTALL.
func (g *globals) decideFile(ctx context.Context, req core.DecideRequest, report bool) error {
	d, err := ask(ctx, g, func(b core.API) (*core.Decision, error) { return b.Decide(ctx, req) })
	if err != nil {
		return err
	}
	if g.json {
		if err := g.printJSON(d); err != nil {
			return err
		}
	} else {
		for _, c := range d.Checks {
			mark := "✓"
			if !c.OK {
				mark = "✗"
			}
			g.printf("%s %s %s\n", mark, c.What, c.Detail)
		}
		if d.Expected != "" {
			g.printf("ERROR: Hash mismatch! Expected %s Got %s\n", d.Expected, d.SHA256)
		}
	}
	if report && d.RedFlag != nil {
		g.reportMismatch(ctx, *d.RedFlag)
	}
	if !g.json {
		for _, r := range d.Reasons {
			g.printf("  - %s\n", r)
		}
		g.printf("Decision: %s\n", d.Verdict)
	}
	if d.Verdict == core.Safe {
		return nil
	}
	return silent(ExitMismatch)
}

// reportMismatch signs and publishes a red flag (docs/TRUST.md); failing
// to is a warning: the verdict does not depend on it.
func (g *globals) reportMismatch(ctx context.Context, m core.Mismatch) {
	api, done, err := g.api(ctx, withKey)
	if err == nil {
		defer done()
		var rr *core.RecordResult
		if rr, err = api.ReportMismatch(ctx, m); err == nil {
			where := "stored; peers get it by sync"
			if rr.Published {
				where = "published to peers"
			}
			fmt.Fprintf(g.errOut, "red flag signed (%s): claim %s — other nodes will see that %s with sha256 %s is circulating (--no-report to keep it to yourself)\n", where, short(rr.ID, 20), m.File, short(m.Observed, 16))
			return
		}
	}
	fmt.Fprintf(g.errOut, "warning: could not sign a red flag for this file: %v\n", err)
}

func opinionName(op *opinions.Opinion) string {
	if op == nil {
		return "vanilla"
	}
	return op.Name
}

func (g *globals) ownBuild(ctx context.Context, f *buildFlags, deb *debfile.Info, op *opinions.Opinion, wantName string, force bool) (*builder.Output, *attest.Recipe, error) {
	if !force {
		if o, r := g.reuseOwn(ctx, deb, op, wantName); o != nil {
			if !g.json {
				fmt.Fprintf(g.errOut, "reusing this node's build of recipe %s (--rebuild to build again)\n", short(r.ID(), 16))
			}
			return o, r, nil
		}
	}
	prog, done := g.progress("rebuilding " + deb.Source)
	defer done()
	rb, err := g.openRebuilder(ctx, f, prog)
	if err != nil {
		return nil, nil, err
	}
	defer rb.Close()
	res, err := rb.Build(ctx, builder.Request{Package: deb.Source, Version: deb.DebianVersion, Opinion: op})
	if err != nil {
		return nil, nil, buildErr(err)
	}
	done()
	if _, err := g.record(ctx, res, op); err != nil {
		fmt.Fprintf(g.errOut, "warning: could not record the rebuild's claim: %v\n", err)
	}
	r := res.Recipe
	if res.Status != attest.ResultSuccess {
		return nil, &r, &ExitError{Code: ExitMismatch, Err: fmt.Errorf("rebuild of %s %s failed: %s", deb.Source, deb.DebianVersion, res.FailReason)}
	}
	for i := range res.Artifacts {
		if res.Artifacts[i].Name == wantName {
			return &res.Artifacts[i], &r, nil
		}
	}
	return nil, &r, nil
}

// reuseOwn finds this node's earlier build output for the recipe.
func (g *globals) reuseOwn(ctx context.Context, deb *debfile.Info, op *opinions.Opinion, wantName string) (*builder.Output, *attest.Recipe) {
	b, done, err := g.api(ctx, read)
	if err != nil {
		return nil, nil
	}
	defer done()
	info, err := b.Info(ctx, core.InfoQuery{Package: deb.Source, DebianVersion: deb.DebianVersion, Opinion: opinionName(op), All: true})
	if err != nil {
		return nil, nil
	}
	cfg, err := g.config()
	if err != nil {
		return nil, nil
	}
	bd := cfg.Layout().BuildDir()
	for _, ri := range info.Recipes {
		if op != nil && ri.Recipe.Opinion.CID != op.CID() {
			continue
		}
		// Outputs are kept per run: builds/<recipe>/<run>/<file>; newest first.
		runs, _ := filepath.Glob(filepath.Join(bd, "builds", ri.Recipe.RecipeID, "*", wantName))
		if len(runs) == 0 {
			continue
		}
		p := runs[len(runs)-1]
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := sha256.Sum256(data)
		sum := hex.EncodeToString(s[:])
		for _, gr := range ri.Report.Groups {
			for _, bc := range append(append([]core.BuilderClaim{}, gr.Trusted...), gr.Unvetted...) {
				if bc.Level == attest.TrustOwn {
					if h, ok := artifactHash(gr.Artifacts, wantName); ok && h == sum {
						r := attest.Recipe{Source: ri.Recipe.Package, DebianVersion: ri.Recipe.DebianVersion, Suite: ri.Recipe.Suite, Arch: ri.Recipe.Arch, OpinionCID: ri.Recipe.Opinion.CID, SourceSHA256: ri.Recipe.SourceSHA256, ImageDigest: ri.Recipe.ImageDigest}
						return &builder.Output{Name: wantName, SHA256: sum, Path: p, Size: int64(len(data))}, &r
					}
				}
			}
		}
	}
	return nil, nil
}

func artifactHash(as []attest.Artifact, name string) (string, bool) {
	for _, a := range as {
		if a.Name == name {
			return a.SHA256, true
		}
	}
	return "", false
}
