package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/opinions"
)

func newOpinionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "opinion", Short: "Check and show opinion files"}
	lint := &cobra.Command{
		Use:   "lint [PATH...]",
		Short: "Check opinion files strictly (default: the whole opinions dir); exit 2 on any problem",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				cfg, err := g.config()
				if err != nil {
					return err
				}
				args = []string{cfg.OpinionsDir}
			}
			errs := opinions.Lint(args...)
			if g.json {
				msgs := make([]string, 0, len(errs))
				for _, e := range errs {
					msgs = append(msgs, e.Error())
				}
				if err := g.printJSON(map[string]any{"ok": len(errs) == 0, "problems": msgs}); err != nil {
					return err
				}
			} else {
				for _, e := range errs {
					fmt.Fprintln(g.errOut, e)
				}
				if len(errs) == 0 {
					g.printf("ok: %v\n", args)
				}
			}
			if len(errs) > 0 {
				return silent(ExitUsage)
			}
			return nil
		},
	}
	show := &cobra.Command{
		Use:   "show PACKAGE/NAME",
		Short: "Show an opinion with its CID and binary version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			o, err := opinions.FindIn([]string{cfg.OpinionsDir, cfg.Layout().FetchedOpinions()}, args[0])
			if err != nil {
				return usageErr("%v", err)
			}
			if g.json {
				return g.printJSON(map[string]any{"opinion": o, "cid": o.CID(), "binary_version": o.BinaryVersion().String(), "path": o.Path, "commit": o.Commit, "lock": o.Lock})
			}
			describeOpinion(g.out, o)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the opinions in the opinions dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			all, err := opinions.LoadDir(cfg.OpinionsDir)
			if err != nil && len(all) == 0 {
				if errors.Is(err, opinions.ErrInvalid) {
					return usageErr("%v", err)
				}
				return envErr(err)
			}
			origin := map[*opinions.Opinion]string{}
			// Opinions fetched from peers (by CID) are listed after the local ones.
			if fetched, ferr := opinions.LoadDir(cfg.Layout().FetchedOpinions()); ferr == nil || len(fetched) > 0 {
				for _, o := range fetched {
					origin[o] = "fetched"
				}
				all = append(all, fetched...)
			}
			if g.json {
				type row struct {
					Ref, Summary, Purity, Version, CID, Origin string
					Locked                                     bool
				}
				rows := []row{}
				for _, o := range all {
					rows = append(rows, row{o.Package + "/" + o.Name, o.Summary, string(o.Purity), o.BinaryVersion().String(), o.CID(), orDefault(origin[o], "local"), o.Lock != nil})
				}
				return g.printJSON(rows)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "OPINION\tPURITY\tVERSION\tLOCKED\tFROM\tSUMMARY")
			for _, o := range all {
				fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%v\t%s\t%s\n", o.Package, o.Name, o.Purity, o.BinaryVersion(), o.Lock != nil, orDefault(origin[o], "local"), o.Summary)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if err != nil {
				fmt.Fprintln(g.errOut, err)
				return silent(ExitUsage)
			}
			return nil
		},
	}
	var lf buildFlags
	lock := &cobra.Command{
		Use:   "lock PACKAGE/NAME...",
		Short: "Pin an opinion's inputs (source and build-image .debs, by sha256) from the verified mirror into <name>.lock",
		Long: `Resolve, from the verified mirror (InRelease signature → Sources/Packages
hashes), the exact inputs of the opinion's recipe: the Debian source (.dsc and
every file) and the full closure of the build image (every binary package:
name, version, arch, size, sha256, pool path), the suite, the mirror state's
date and the image epoch. The lock is written beside the opinion as
<name>.lock; the opinion's CID covers it, and builders then make the image
from exactly these .debs, fetched by hash from the mirror, a snapshot
archive or peers (docs/BUILDER.md). Resolving makes one throwaway image from
the mirror (mmdebstrap) to learn the closure.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var ops []*opinions.Opinion
			for _, ref := range args {
				r, err := vocab.ParseRef(ref)
				if err != nil || r.Opinion == "" {
					return usageErr("%q: want PACKAGE/NAME of an opinion, e.g. hello/o3", ref)
				}
				o, err := g.loadOpinion(ctx, r.Package, r.Opinion)
				if err != nil {
					return err
				}
				ops = append(ops, o)
			}
			prog, done := g.progress("locking")
			defer done()
			rb, err := g.openRebuilder(ctx, &lf, prog)
			if err != nil {
				return err
			}
			defer rb.Close()
			type row struct {
				Ref        string `json:"ref"`
				Path       string `json:"path"`
				Packages   int    `json:"packages"`
				Source     string `json:"source"`
				MirrorDate string `json:"mirror_date"`
				CID        string `json:"cid"`
				Changed    bool   `json:"changed"`
			}
			var rows []row
			for _, o := range ops {
				l, err := rb.Resolve(ctx, builder.Request{Package: o.Package, Opinion: o})
				if err != nil {
					return buildErr(err)
				}
				old, _ := os.ReadFile(o.LockPath())
				enc := l.Encode()
				if err := os.WriteFile(o.LockPath(), enc, 0o644); err != nil {
					return envErr(err)
				}
				o2, err := opinions.Load(o.Path, opinions.WithGitCommit(false))
				if err != nil {
					return err
				}
				rows = append(rows, row{Ref: o.Package + "/" + o.Name, Path: o.LockPath(), Packages: len(l.Image),
					Source: l.Package + " " + l.Source.Version, MirrorDate: l.MirrorDate.Format(time.RFC3339), CID: o2.CID(), Changed: !bytes.Equal(old, enc)})
			}
			done()
			if g.json {
				return g.printJSON(rows)
			}
			for _, r := range rows {
				state := "unchanged"
				if r.Changed {
					state = "written"
				}
				g.printf("%s: %s %s (%s, %d image packages, mirror state %s)\n  new opinion cid %s\n", r.Ref, state, r.Path, r.Source, r.Packages, r.MirrorDate, r.CID)
			}
			return nil
		},
	}
	g.addBuildFlags(lock, &lf)
	cmd.AddCommand(lint, show, list, lock)
	return cmd
}

// describeOpinion prints what an opinion changes and pins.
func describeOpinion(w io.Writer, o *opinions.Opinion) {
	fmt.Fprintf(w, "%s/%s: %s\n", o.Package, o.Name, o.Summary)
	fmt.Fprintf(w, "  file:           %s\n  cid:            %s\n", o.Path, o.CID())
	if o.Commit != "" {
		fmt.Fprintf(w, "  commit:         %s\n", o.Commit)
	}
	fmt.Fprintf(w, "  purity:         %s (%s)\n  debian:         %s %s\n  binary version: %s\n", o.Purity, o.Purity.Words(), o.Debian.Suite, o.Debian.Version, o.BinaryVersion())
	for _, f := range []struct {
		label string
		v     []string
	}{{"CFLAGS +=", o.Build.CFlags.Append}, {"CXXFLAGS +=", o.Build.CXXFlags.Append}, {"LDFLAGS +=", o.Build.LDFlags.Append},
		{"build options:", o.Build.BuildOptions}, {"configure:", o.Build.ConfigureArgs}} {
		if len(f.v) > 0 {
			fmt.Fprintf(w, "  %-15s %v\n", f.label, f.v)
		}
	}
	for _, p := range o.Patches {
		fmt.Fprintf(w, "  patch:          %s (sha256 %s)\n", p.Path, p.SHA256)
	}
	if l := o.Lock; l != nil {
		fmt.Fprintf(w, "  lock:           %s %s (dsc sha256 %s), %d image packages, mirror state %s\n", l.Package, l.Source.Version, l.Source.Dsc.SHA256, len(l.Image), l.MirrorDate.Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "  lock:           none — inputs not pinned (`lebowski opinion lock %s/%s`)\n", o.Package, o.Name)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
