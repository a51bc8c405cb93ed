package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
)

type buildFlags struct {
	opinion   string
	version   string
	suite     string
	twice     bool
	podmanURL string
	cacheDir  string
	mirror    string
	snapshot  string
	timeout   time.Duration
}

func (g *globals) addBuildFlags(cmd *cobra.Command, f *buildFlags) {
	cmd.Flags().StringVar(&f.podmanURL, "podman-url", os.Getenv("LEBOWSKI_PODMAN_URL"), "podman API URL (default: the config's builds.podman_url, else start a private podman service)")
	cmd.Flags().StringVar(&f.cacheDir, "cache-dir", os.Getenv("LEBOWSKI_CACHE_DIR"), "where verified sources and build images are cached (default the config's cache_dir, <data-dir>/cache)")
	cmd.Flags().StringVar(&f.mirror, "mirror", "", "Debian mirror (default the config's mirror, "+source.DefaultMirror+")")
	cmd.Flags().StringVar(&f.snapshot, "snapshot-url", "", "Debian snapshot archive for locked inputs the mirror no longer has (default the config's snapshot_url)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 0, fmt.Sprintf("wall-clock limit of one build; a timeout is signed as a failed build (default the config's builds.timeout, %s)", config.DefaultBuildTimeout))
}

// loadOpinion resolves --opinion for a package: "" or "vanilla" = none.
// It looks in the opinions directory, then among the opinions this node
// fetched before, then asks the node (and through a running lebowskid,
// its peers) for the content the best-attested claims name: fetched
// bundles are checked against their CID, kept under <data-dir>/opinions
// and shown before anything is built from them.
func (g *globals) loadOpinion(ctx context.Context, pkg, name string) (*opinions.Opinion, error) {
	if name == "" || name == vocab.Vanilla {
		return nil, nil
	}
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	ref := name
	if !strings.Contains(ref, "/") {
		ref = pkg + "/" + name
	}
	fetched := cfg.Layout().FetchedOpinions()
	o, err := opinions.FindIn([]string{cfg.OpinionsDir, fetched}, ref, opinions.WithGitCommit(true))
	if errors.Is(err, opinions.ErrNotFound) {
		o, err = g.fetchOpinion(ctx, ref)
	}
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			return nil, err
		}
		return nil, usageErr("%v (opinions dir %s; set --opinions)", err, cfg.OpinionsDir)
	}
	if o.Package != pkg {
		return nil, usageErr("opinion %s is for package %s, not %s", ref, o.Package, pkg)
	}
	return o, nil
}

// fetchOpinion gets an opinion this node has no file for from the claims
// that name it (opinions.WriteBundle checks the bytes against the CID).
func (g *globals) fetchOpinion(ctx context.Context, ref string) (*opinions.Opinion, error) {
	r, err := vocab.ParseRef(ref)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	api, done, err := g.api(ctx, write)
	if err != nil {
		return nil, err
	}
	defer done()
	b, err := api.Opinion(ctx, core.OpinionQuery{Package: r.Package, Name: r.Opinion})
	if err != nil {
		return nil, usageErr("opinion %s is not in %s, and fetching it failed: %v", ref, cfg.OpinionsDir, err)
	}
	o, err := opinions.WriteBundle(cfg.Layout().FetchedOpinions(), b.CID, b.Data)
	if err != nil {
		return nil, &ExitError{Code: ExitMismatch, Err: fmt.Errorf("refused the bundle of %s: %w", ref, err)}
	}
	if !g.json {
		fmt.Fprintf(g.errOut, "fetched opinion %s (cid %s), named by %d claims; kept at %s — review it with `lebowski opinion show %s`:\n", ref, o.CID(), b.Claims, o.Path, ref)
		describeOpinion(g.errOut, o)
	}
	return o, nil
}

// progress shows a spinner with the latest build line on stderr (not in
// --json mode, not when stderr is not a terminal).
func (g *globals) progress(desc string) (func(string), func()) {
	if g.json || !isTerminal(os.Stderr) {
		return func(line string) { g.log.Debug(line) }, func() {}
	}
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSpinnerType(14),
		progressbar.OptionSetDescription(desc), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
	return func(line string) {
			line = strings.TrimSpace(line)
			if len(line) > 70 {
				line = line[:70]
			}
			bar.Describe(desc + ": " + line)
			_ = bar.Add(1)
		}, func() {
			_ = bar.Finish()
		}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// rebuilder is what the commands need from the builder (tests swap a
// fake in through globals.openBuilder).
type rebuilder interface {
	builder.Builder
	Resolve(ctx context.Context, req builder.Request) (*opinions.Lock, error)
	PrepareImage(ctx context.Context, req builder.Request) (*builder.Image, error)
	Close() error
}

// openRebuilder connects to podman with the config's settings, overridden
// by the command's flags.
func (g *globals) openRebuilder(ctx context.Context, f *buildFlags, progress func(string)) (rebuilder, error) {
	if g.openBuilder != nil {
		return g.openBuilder(ctx, f, progress)
	}
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	l := cfg.Layout()
	env := builder.Env{WorkDir: l.BuildDir(), CacheDir: cfg.CacheDir, Mirror: cfg.Mirror, Snapshot: cfg.SnapshotURL, PodmanURL: cfg.Builds.PodmanURL,
		Timeout: cfg.Builds.Timeout, Log: g.log, Progress: progress}
	// Through a running lebowskid, locked inputs can come from its peers.
	if c, err := g.dial(ctx); c != nil {
		env.Peers = daemonPeers{c}
	} else if err != nil {
		return nil, err
	}
	for _, o := range []struct {
		dst *string
		v   string
	}{{&env.CacheDir, f.cacheDir}, {&env.Mirror, f.mirror}, {&env.Snapshot, f.snapshot}, {&env.PodmanURL, f.podmanURL}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	if f.timeout > 0 {
		env.Timeout = f.timeout
	}
	if err := l.Ensure(); err != nil {
		return nil, envErr(err)
	}
	rb, err := builder.Open(ctx, env)
	if err != nil {
		return nil, buildErr(err)
	}
	return rb, nil
}

// buildErr maps builder errors to exit codes: refusals of input are 2,
// tampered sources 1, the rest (podman, network) 3.
func buildErr(err error) error {
	var ee *ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return err
	case errors.Is(err, builder.ErrUnsafeOpinion), errors.Is(err, builder.ErrInvalidRequest), errors.Is(err, opinions.ErrInvalid), errors.Is(err, source.ErrNotFound), errors.Is(err, builder.ErrNotApplicable):
		return &ExitError{Code: ExitUsage, Err: err}
	case errors.Is(err, source.ErrHashMismatch), errors.Is(err, source.ErrBadSignature):
		return &ExitError{Code: ExitMismatch, Err: err}
	}
	return &ExitError{Code: ExitEnv, Err: err}
}

type buildOutput struct {
	Package       string           `json:"package"`
	Version       string           `json:"version"`
	Opinion       string           `json:"opinion,omitempty"`
	RecipeID      string           `json:"recipe_id"`
	Recipe        attest.Recipe    `json:"recipe"`
	Status        attest.Result    `json:"status"`
	FailReason    string           `json:"fail_reason,omitempty"`
	Artifacts     []builder.Output `json:"artifacts"`
	Reproducible  *bool            `json:"reproducible,omitempty"` // with --twice
	ClaimID       string           `json:"claim_id,omitempty"`
	Claim         string           `json:"claim,omitempty"` // wire envelope
	DiffoscopeCID string           `json:"diffoscope_cid,omitempty"`
	Seconds       float64          `json:"seconds"`
}

func newBuildCmd(g *globals) *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build PACKAGE [--opinion NAME] [--twice]",
		Short: "Rebuild a Debian source package under an opinion in a pinned podman container and sign the result",
		Long: `Rebuild a Debian source package from its verified Debian source under an
opinion, in a pinned container without network, then sign a claim of the
result into this node's store (or hand it to the running lebowskid).

With --twice the package is built two times; differing hashes exit 1 and
diffoscope's report is kept.

Exit codes: 0 built (and reproducible with --twice), 1 not reproducible or the
source failed verification, 2 bad input (opinion, package), 3 environment
(podman missing, no network to the mirror).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pkg := args[0]
			if err := vocab.CheckPackage(pkg); err != nil {
				return usageErr("%v", err)
			}
			op, err := g.loadOpinion(ctx, pkg, f.opinion)
			if err != nil {
				return err
			}
			step := func(format string, a ...any) {
				if !g.json {
					fmt.Fprintf(g.errOut, "==> "+format+"\n", a...)
				}
			}
			prog, done := g.progress("building " + pkg)
			defer done()
			step("connecting to podman")
			rb, err := g.openRebuilder(ctx, &f, prog)
			if err != nil {
				return err
			}
			defer rb.Close()
			req := builder.Request{Package: pkg, Version: f.version, Suite: f.suite, Opinion: op}
			start := time.Now()
			step("fetching verified source, preparing image, building %s%s", pkg, opinionSuffix(op))
			var res *builder.Result
			if f.twice {
				step("building two times to check reproducibility")
				res, err = builder.BuildTwice(ctx, rb, req)
			} else {
				res, err = rb.Build(ctx, req)
			}
			if errors.Is(err, builder.ErrNotApplicable) && res != nil {
				// The opinion does not apply to this source: that is a
				// result others should know, signed as a failed build.
				step("the opinion does not apply: signing a failed build (%s)", res.FailReason)
			} else if err != nil {
				return buildErr(err)
			}
			out := buildOutput{Package: pkg, Version: res.BinaryVersion, RecipeID: res.Recipe.ID(), Recipe: res.Recipe, Status: res.Status, FailReason: res.FailReason, Artifacts: res.Artifacts}
			if op != nil {
				out.Opinion = op.Name
			}
			status := res.Status
			if f.twice && (status == attest.ResultSuccess || status == attest.ResultUnreproducible) {
				same := status == attest.ResultSuccess
				out.Reproducible = &same
			}
			done()
			rec, err := g.record(ctx, res, op)
			if err != nil {
				return err
			}
			out.DiffoscopeCID = rec.DiffoscopeCID
			out.Seconds = time.Since(start).Seconds()
			out.ClaimID, out.Claim = rec.ID, string(rec.Wire)
			if g.json {
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				printBuild(g, out)
			}
			switch {
			case status == attest.ResultUnreproducible:
				return silent(ExitMismatch)
			case status != attest.ResultSuccess:
				return silent(ExitMismatch)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&f.opinion, "opinion", "", "opinion name (package/name or name; empty or \"vanilla\" = unmodified Debian)")
	cmd.Flags().StringVar(&f.version, "version", "", "Debian source version (default: the opinion's, else the suite's current)")
	cmd.Flags().StringVar(&f.suite, "suite", "", "Debian suite (default: the opinion's, else bookworm)")
	cmd.Flags().BoolVar(&f.twice, "twice", false, "build two times and fail (exit 1) if the hashes differ")
	g.addBuildFlags(cmd, &f)
	return cmd
}

func opinionSuffix(op *opinions.Opinion) string {
	if op == nil {
		return " (vanilla)"
	}
	return " under opinion " + op.Name
}

func printBuild(g *globals, o buildOutput) {
	g.printf("%s %s: %s in %.0fs\n", o.Package, o.Version, o.Status, o.Seconds)
	if o.FailReason != "" {
		g.printf("  reason: %s\n", o.FailReason)
	}
	g.printf("  recipe %s\n  source sha256 %s\n  image %s\n", o.RecipeID, o.Recipe.SourceSHA256, o.Recipe.ImageDigest)
	for _, a := range o.Artifacts {
		g.printf("  %s  %s\n", a.SHA256, a.Path)
	}
	if o.Reproducible != nil {
		if *o.Reproducible {
			g.printf("  reproducible: built twice, identical SHA256\n")
		} else {
			g.printf("  NOT reproducible: the two builds differ (diffoscope report blob %s)\n", o.DiffoscopeCID)
		}
	}
	g.printf("  signed claim %s\n", o.ClaimID)
}

func (g *globals) putBlob(ctx context.Context, b []byte) (string, error) {
	api, done, err := g.api(ctx, write)
	if err != nil {
		return "", err
	}
	defer done()
	return api.PutBlob(ctx, b)
}

// record turns a build into this node's signed claim with core.Record:
// through the running lebowskid when it answers, else into the local
// store. Both paths give the same claim (buildinfo and log CIDs included).
func (g *globals) record(ctx context.Context, res *builder.Result, op *opinions.Opinion) (*core.RecordResult, error) {
	api, done, err := g.api(ctx, withKey)
	if err != nil {
		return nil, err
	}
	defer done()
	rec, err := core.Record(ctx, api, res, op)
	if err != nil {
		return nil, fmt.Errorf("recording the build: %w", err)
	}
	return rec, nil
}

// daemonPeers fetches blobs from the running daemon's peers (source.Peers).
type daemonPeers struct{ api core.API }

func (d daemonPeers) FetchBlob(ctx context.Context, cid string, max int64) ([]byte, string, error) {
	b, err := d.api.FetchBlob(ctx, cid)
	if err != nil {
		return nil, "", err
	}
	if int64(len(b)) > max {
		return nil, "", fmt.Errorf("blob %s: %d bytes, more than %d", cid, len(b), max)
	}
	return b, "via lebowskid", nil
}
