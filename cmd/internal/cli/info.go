package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

func newInfoCmd(g *globals) *cobra.Command {
	var version, opinion string
	var all bool
	cmd := &cobra.Command{
		Use:   "info PACKAGE",
		Short: "Trust score, consensus and builders of a package's rebuilds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := ask(cmd.Context(), g, func(b core.API) (*core.InfoResult, error) {
				return b.Info(cmd.Context(), core.InfoQuery{Package: args[0], DebianVersion: version, Opinion: opinion, All: all})
			})
			if err != nil {
				return notFoundAsMismatch(g, err)
			}
			if g.json {
				return g.printJSON(res)
			}
			now := time.Now()
			for i, ri := range res.Recipes {
				if i > 0 {
					fmt.Fprintln(g.out)
				}
				renderRecipe(g.out, ri, now)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "Debian source version (default: all)")
	cmd.Flags().StringVar(&opinion, "opinion", "", "opinion name (\"vanilla\" for unmodified builds; default: all)")
	cmd.Flags().BoolVar(&all, "all", false, "show every recipe, not only the best-attested one")
	return cmd
}

func notFoundAsMismatch(g *globals, err error) error {
	if core.IsNotFound(err) {
		fmt.Fprintf(g.errOut, "lebowski: %v\n", err)
		return silent(ExitMismatch)
	}
	return err
}

// maxUnvettedRows bounds the builder table per group: a flood of fresh keys
// must not bury the trusted builders (--json has them all).
const maxUnvettedRows = 10

// renderRecipe prints the seed's info layout.
func renderRecipe(w io.Writer, ri core.RecipeInfo, now time.Time) {
	r, rep := ri.Recipe, ri.Report
	op := "vanilla Debian build"
	if r.Opinion.Name != "" {
		op = "opinion " + r.Opinion.Name
	}
	fmt.Fprintf(w, "Package:        %s %s (%s, %s/%s)\n", r.Package, r.Version, op, r.Suite, r.Arch)
	fmt.Fprintf(w, "Trust score:    %s\n", ri.Bar)
	trustedTotal := map[string]bool{}
	agree := 0
	for _, gr := range rep.Groups {
		for _, b := range gr.Trusted {
			trustedTotal[b.Fingerprint] = true
		}
	}
	for _, b := range append(append([]core.BuilderClaim{}, rep.Failed...), rep.Unreproducible...) {
		if b.Trusted() {
			trustedTotal[b.Fingerprint] = true
		}
	}
	unvetted := 0
	for _, gr := range rep.Groups {
		unvetted += len(gr.Unvetted)
	}
	if rep.Consensus != nil {
		agree = len(rep.Consensus.Trusted)
	}
	fmt.Fprintf(w, "Consensus:      %d/%d trusted builders agree", agree, len(trustedTotal))
	if unvetted > 0 {
		fmt.Fprintf(w, " (+%d unvetted keys, not counted)", unvetted)
	}
	fmt.Fprintln(w)
	if rep.Consensus != nil {
		fmt.Fprintf(w, "Most recent:    %s (%s)\n", rep.Consensus.Newest.UTC().Format("2006-01-02 15:04:05 UTC"), ago(now, rep.Consensus.Newest))
	} else {
		fmt.Fprintf(w, "Most recent:    %s (%s)\n", r.Newest.UTC().Format("2006-01-02 15:04:05 UTC"), ago(now, r.Newest))
	}
	pur := fmt.Sprintf("%s (%s)", rep.Purity.Words(), rep.Purity)
	if rep.Vanilla {
		pur = "vanilla Debian (no opinion)"
	}
	fmt.Fprintf(w, "Purity:         %s\n", pur)
	fmt.Fprintf(w, "Recipe:         %s\n", r.RecipeID)
	fmt.Fprintf(w, "  source sha256 %s\n  image         %s\n", r.SourceSHA256, r.ImageDigest)
	if r.Opinion.CID != "" {
		fmt.Fprintf(w, "  opinion cid   %s\n", r.Opinion.CID)
	}
	if rep.Consensus != nil {
		fmt.Fprintln(w, "Artifacts:")
		for _, a := range rep.Consensus.Artifacts {
			fmt.Fprintf(w, "  %s  %s\n", a.SHA256, a.Name)
		}
	}
	renderEvidence(w, ri.Evidence)
	fmt.Fprintln(w, "Builders:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  BUILDER\tTRUST\tRESULT\tAGREES\tPEER\tWHEN")
	row := func(b core.BuilderClaim, agrees string) {
		peer := b.PeerID
		if peer == "" {
			peer = "-"
		}
		level := string(b.Level)
		if p := ri.Via[b.Fingerprint]; len(p) > 0 {
			level += " via " + strings.Join(shortAll(p, 8), " → ")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", short(b.Fingerprint, 16), level, b.Result, agrees, short(peer, 14), ago(now, b.Timestamp))
	}
	for i, gr := range rep.Groups {
		agrees := "no"
		if rep.Consensus != nil && gr.ArtifactKey == rep.Consensus.ArtifactKey {
			agrees = "yes"
		} else if rep.Consensus == nil {
			agrees = fmt.Sprintf("group %d", i+1)
		}
		for _, b := range gr.Trusted {
			row(b, agrees)
		}
		for i, b := range gr.Unvetted {
			if i == maxUnvettedRows {
				fmt.Fprintf(tw, "  … %d more unvetted keys\t\t\t%s\t\t\n", len(gr.Unvetted)-i, agrees)
				break
			}
			row(b, agrees)
		}
	}
	for _, b := range rep.Failed {
		row(b, "-")
	}
	for _, b := range rep.Unreproducible {
		row(b, "no")
	}
	tw.Flush()
	renderRedFlags(w, rep.RedFlags, now)
	if len(rep.Equivocators) > 0 {
		fmt.Fprintf(w, "Equivocating keys (count for nothing): %s\n", strings.Join(rep.Equivocators, ", "))
	}
	fmt.Fprintln(w, "Reasons:")
	for _, s := range rep.Reasons {
		fmt.Fprintf(w, "  - %s\n", s)
	}
	fmt.Fprintf(w, "Recommendation: %s\n", recommendation(rep))
}

func recommendation(rep core.Report) string {
	switch {
	case rep.Conflict:
		return "DO NOT INSTALL — trusted builders disagree"
	case rep.Consensus == nil:
		return "UNVERIFIED — no trusted consensus yet"
	}
	return fmt.Sprintf("install a file only if its SHA256 matches the artifacts above (`lebowski verify FILE.deb`); score %.1f/10", rep.Score)
}

// renderEvidence says what the claims publish beside the hashes.
func renderEvidence(w io.Writer, ev core.RecipeEvidence) {
	line := func(label string, bs []core.EvidenceBlob, public string) {
		if len(bs) == 0 {
			fmt.Fprintf(w, "%-16s%s\n", label+":", "none published")
			return
		}
		builders, held := 0, 0
		for _, b := range bs {
			builders += b.Builders
			if b.Held {
				held++
			}
		}
		fmt.Fprintf(w, "%-16s%s (%s; %d of %d held here): `lebowski blob get %s`\n", label+":", public, plural(builders, "builder serves", "builders serve")+" them", held, len(bs), bs[0].CID)
	}
	line("Buildinfo", ev.Buildinfo, "available")
	line("Build logs", ev.Logs, "public")
	if len(ev.Locks) > 0 {
		line("Lock", ev.Locks, "pinned inputs published")
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// maxRedFlagRows bounds the red flags listed from keys that are not
// trusted (--json has them all).
const maxRedFlagRows = 5

// renderRedFlags lists mismatch reports: trusted ones all, others capped.
func renderRedFlags(w io.Writer, flags []core.RedFlag, now time.Time) {
	if len(flags) == 0 {
		return
	}
	trusted := 0
	for _, f := range flags {
		if f.Trusted() {
			trusted++
		}
	}
	fmt.Fprintf(w, "Red flags:      %d (%d from trusted keys): files of this recipe that differed from what their reporters expected; they never vote (docs/TRUST.md)\n", len(flags), trusted)
	others := 0
	for _, f := range flags {
		if !f.Trusted() {
			if others == maxRedFlagRows {
				fmt.Fprintf(w, "  … %d more from other keys\n", len(flags)-trusted-others)
				break
			}
			others++
		}
		fmt.Fprintf(w, "  %s %-9s %s sha256 %s (expected %s) %s", short(f.Fingerprint, 16), f.Level, f.File, short(f.Observed, 16), short(f.Expected, 16), ago(now, f.Timestamp))
		if f.Reason != "" {
			fmt.Fprintf(w, " — %s", f.Reason)
		}
		fmt.Fprintln(w)
	}
}
