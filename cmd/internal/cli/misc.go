package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/internal/human"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
)

func newDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff A.deb B.deb",
		Short: "Explain how two builds differ (diffoscope); the report is kept by CID",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, p := range args {
				if _, err := os.Stat(p); err != nil {
					return usageErr("%v", err)
				}
			}
			rep, err := builder.Diff(cmd.Context(), args[0], args[1])
			if err != nil && len(rep) == 0 {
				if errors.Is(err, builder.ErrEnvironment) {
					return envErr(err)
				}
				return err
			}
			cid, perr := g.putBlob(cmd.Context(), rep)
			if g.json {
				return g.printJSON(map[string]any{"identical": len(rep) == 0, "report_cid": cid, "report": string(rep)})
			}
			if len(rep) == 0 {
				g.printf("identical\n")
				return nil
			}
			os.Stdout.Write(rep)
			if perr == nil {
				fmt.Fprintf(g.errOut, "report kept as blob %s\n", cid)
			}
			return silent(ExitMismatch)
		},
	}
}

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build and list the pinned build images"}
	var f buildFlags
	build := &cobra.Command{
		Use:   "build PACKAGE [--opinion NAME]",
		Short: "Prepare the build image of a package (base + its Build-Depends) without building",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			op, err := g.loadOpinion(ctx, args[0], f.opinion)
			if err != nil {
				return err
			}
			prog, done := g.progress("image for " + args[0])
			defer done()
			rb, err := g.openRebuilder(ctx, &f, prog)
			if err != nil {
				return err
			}
			defer rb.Close()
			img, err := rb.PrepareImage(ctx, builder.Request{Package: args[0], Version: f.version, Opinion: op})
			if err != nil {
				return buildErr(err)
			}
			done()
			if g.json {
				return g.printJSON(img)
			}
			g.printf("image %s\n  digest %s\n  %d packages installed\n", img.Ref, img.Digest, len(img.Installed))
			return nil
		},
	}
	build.Flags().StringVar(&f.opinion, "opinion", "", "opinion (selects the Debian version)")
	build.Flags().StringVar(&f.version, "version", "", "Debian source version")
	g.addBuildFlags(build, &f)
	var lf buildFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List cached build images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache := lf.cacheDir
			if cache == "" {
				cfg, err := g.config()
				if err != nil {
					return err
				}
				cache = cfg.CacheDir
			}
			imgs, err := builder.ListImages(cache)
			if err != nil {
				return envErr(err)
			}
			if g.json {
				if imgs == nil {
					imgs = []builder.Image{}
				}
				return g.printJSON(imgs)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REF\tDIGEST\tPACKAGES")
			for _, i := range imgs {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", i.Ref, i.Digest, len(i.Installed))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&lf.cacheDir, "cache-dir", os.Getenv("LEBOWSKI_CACHE_DIR"), "image cache (default <data-dir>/cache)")
	cmd.AddCommand(build, list)
	return cmd
}

// daemon returns the running lebowskid's API; these commands need one.
func (g *globals) daemon(cmd *cobra.Command) (core.API, error) {
	c, err := g.dial(cmd.Context())
	if err != nil {
		return nil, err
	}
	if c == nil {
		cfg, _ := g.config()
		return nil, envErr(fmt.Errorf("%w: start it with `lebowskid --data-dir %s`", rpc.ErrNoDaemon, cfg.DataDir))
	}
	return c, nil
}

func newPeersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "List the peers the running lebowskid is connected to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.daemon(cmd)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			peers, err := c.Peers(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				if peers == nil {
					peers = []core.PeerInfo{}
				}
				return g.printJSON(map[string]any{"self": st, "peers": peers})
			}
			g.printf("this node: %s (builder %s)\n", st.PeerID, st.Builder)
			for _, a := range st.Addrs {
				g.printf("  %s\n", a)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tSCORE\tTOPICS\tADDRESS")
			for _, p := range peers {
				addr := ""
				if len(p.Addrs) > 0 {
					addr = p.Addrs[0]
				}
				fmt.Fprintf(tw, "%s\t%.1f\t%d\t%s\n", p.ID, p.Score, len(p.Topics), addr)
			}
			return tw.Flush()
		},
	}
}

func newSubscribeCmd(g *globals) *cobra.Command {
	var off bool
	cmd := &cobra.Command{
		Use:   "subscribe [PACKAGE/OPINION...]",
		Short: "Show or change the running daemon's opinion subscriptions",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.daemon(cmd)
			if err != nil {
				return err
			}
			var subs []string
			for _, a := range args {
				if subs, err = c.Subscribe(cmd.Context(), a, !off); err != nil {
					return notFoundIsUsage(err, "topics are package/opinion, e.g. hello/o3")
				}
			}
			if len(args) == 0 {
				st, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				subs = st.Subscriptions
			}
			if g.json {
				if subs == nil {
					subs = []string{}
				}
				return g.printJSON(subs)
			}
			for _, s := range subs {
				g.printf("%s\n", s)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&off, "off", false, "unsubscribe instead")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Describe this node: builder key, daemon, peers, subscriptions, builds, claims",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := ask(cmd.Context(), g, func(b core.API) (*core.Status, error) { return b.Status(cmd.Context()) })
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(st)
			}
			return writeStatus(g.out, st, time.Now())
		},
	}
}

// writeStatus is `lebowski status` for people: the node, then the rebuilds
// running here (one a line, with the last line of their log) and those
// other builders announced.
func writeStatus(w io.Writer, st *core.Status, now time.Time) error {
	state := "not running (answers come from the store)"
	if st.Online {
		state = fmt.Sprintf("running since %s, peer %s", st.Started.Format("2006-01-02 15:04:05"), st.PeerID)
	}
	key := st.Builder
	if key == "" {
		key = "none (run `lebowski key gen`)"
	}
	fmt.Fprintf(w, "lebowskid:      %s\nbuilder key:    %s\nversion:        %s\nclaims:         %d\npeers:          %d\n", state, key, st.Version, st.Claims, st.Peers)
	fmt.Fprintf(w, "subscriptions:  %s\n", strings.Join(st.Subscriptions, ", "))

	// Running here: the builds with their details, then any key the build
	// queue names without them.
	refs := map[string]string{} // recipe key → package/opinion
	type row struct{ name, since, reason, last string }
	var rows []row
	for _, b := range st.Builds {
		ref := vocab.Ref{Package: b.Package, Opinion: b.Opinion}
		if b.Opinion == vocab.Vanilla {
			ref.Opinion = ""
		}
		refs[b.Recipe] = ref.String()
		last := "(no output yet)"
		if n := len(b.LogTail); n > 0 {
			last = "| " + short(core.OneLine(b.LogTail[n-1]), 100)
		}
		r := row{name: ref.String(), since: "for " + human.Span(now.Sub(b.Started)), reason: core.OneLine(b.Reason), last: last}
		if b.Started.IsZero() {
			r.since = ""
		}
		rows = append(rows, r)
	}
	for _, k := range st.RunningBuilds {
		if _, ok := refs[k]; !ok {
			rows = append(rows, row{name: shortRecipeKey(k)})
		}
	}
	fmt.Fprintf(w, "builds:         %d queued, %d running\n", st.QueuedBuilds, len(rows))
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.name, r.since, r.reason, r.last)
	}
	fmt.Fprintf(tw, "being built elsewhere: %d\n", len(st.Intents)) // a line without cells: ends the columns above
	for _, in := range st.Intents {
		name, ok := refs[in.Recipe]
		if !ok {
			name = shortRecipeKey(in.Recipe)
		}
		expires := "expired"
		if in.Expires.After(now) {
			expires = "expires in " + human.Span(in.Expires.Sub(now))
		}
		expect := ""
		if in.Expect > 0 {
			expect = "expected ~" + human.Span(time.Duration(in.Expect)*time.Second)
		}
		fmt.Fprintf(tw, "  %s\tby %s\tstarted %s\t%s\t%s\n", name, short(core.OneLine(in.Builder), 16), ago(now, in.Started), expect, expires)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(table.String(), "\n") {
		if l != "" {
			fmt.Fprintln(w, strings.TrimRight(l, " \n"))
		}
	}
	return nil
}

// shortRecipeKey is a recipe key (package/opinion CID) for a terminal: its
// opinion CID shortened, control characters removed.
func shortRecipeKey(key string) string {
	key = core.OneLine(key)
	pkg, rest, ok := strings.Cut(key, "/")
	if !ok || rest == vocab.Vanilla {
		return short(key, 60)
	}
	return short(pkg, 40) + "/" + short(rest, 12)
}
