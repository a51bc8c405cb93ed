package cli

import (
	"bytes"
	"errors"
	"fmt"
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
			o, err := opinions.Find(cfg.OpinionsDir, args[0])
			if err != nil {
				return usageErr("%v", err)
			}
			if g.json {
				return g.printJSON(map[string]any{"opinion": o, "cid": o.CID(), "binary_version": o.BinaryVersion().String(), "path": o.Path, "commit": o.Commit})
			}
			g.printf("%s/%s: %s\n", o.Package, o.Name, o.Summary)
			g.printf("  file:           %s\n  cid:            %s\n", o.Path, o.CID())
			if o.Commit != "" {
				g.printf("  commit:         %s\n", o.Commit)
			}
			g.printf("  purity:         %s\n  debian:         %s %s\n  binary version: %s\n", o.Purity, o.Debian.Suite, o.Debian.Version, o.BinaryVersion())
			if a := o.Build.CFlags.Append; len(a) > 0 {
				g.printf("  CFLAGS +=       %v\n", a)
			}
			if a := o.Build.CXXFlags.Append; len(a) > 0 {
				g.printf("  CXXFLAGS +=     %v\n", a)
			}
			if a := o.Build.LDFlags.Append; len(a) > 0 {
				g.printf("  LDFLAGS +=      %v\n", a)
			}
			if len(o.Build.BuildOptions) > 0 {
				g.printf("  build options:  %v\n", o.Build.BuildOptions)
			}
			if len(o.Build.ConfigureArgs) > 0 {
				g.printf("  configure:      %v\n", o.Build.ConfigureArgs)
			}
			for _, p := range o.Patches {
				g.printf("  patch:          %s (sha256 %s)\n", p.Path, p.SHA256)
			}
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
			if g.json {
				type row struct {
					Ref, Summary, Purity, Version, CID string
				}
				rows := []row{}
				for _, o := range all {
					rows = append(rows, row{o.Package + "/" + o.Name, o.Summary, string(o.Purity), o.BinaryVersion().String(), o.CID()})
				}
				return g.printJSON(rows)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "OPINION\tPURITY\tVERSION\tSUMMARY")
			for _, o := range all {
				fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\n", o.Package, o.Name, o.Purity, o.BinaryVersion(), o.Summary)
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
				o, err := g.loadOpinion(r.Package, r.Opinion)
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
