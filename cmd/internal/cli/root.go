// Package cli implements the `lebowski` command line. Commands talk to the
// node through core.API (the running daemon over its socket, or the local
// store), and to the opinions and builder packages; nothing else.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/cmd/internal/version"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/rpc"
	"github.com/lebowski-dist/lebowski/opinions"
)

// Exit codes (documented in docs/CLI.md).
const (
	ExitOK       = 0 // verified, SAFE TO INSTALL, command succeeded
	ExitMismatch = 1 // hash mismatch, DO NOT INSTALL, UNVERIFIED
	ExitUsage    = 2 // usage or input error
	ExitEnv      = 3 // environment error (podman missing, store locked …)
)

// ExitError carries an exit code through cobra.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

func usageErr(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}
func envErr(err error) error { return &ExitError{Code: ExitEnv, Err: err} }

// silent is an exit code whose message was already printed.
func silent(code int) error { return &ExitError{Code: code} }

type globals struct {
	dataDir     string
	opinionsDir string
	json        bool
	verbose     int
	socket      string
	socketSet   bool // --socket or $LEBOWSKI_SOCKET: it must answer
	dataDirSet  bool // --data-dir or $LEBOWSKI_DATA_DIR: never fall back to the system daemon
	out         io.Writer
	errOut      io.Writer
	in          io.Reader // stdin (tests replace it)
	log         *slog.Logger
	cfg         *config.Config
	// openBuilder makes the rebuilder (tests replace it with a fake).
	openBuilder func(ctx context.Context, f *buildFlags, progress func(string)) (rebuilder, error)
}

// Main runs the CLI with args and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{out: os.Stdout, errOut: os.Stderr}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	return exitCode(g, err)
}

func exitCode(g *globals, err error) int {
	var ee *ExitError
	code := ExitEnv
	switch {
	case errors.As(err, &ee):
		code = ee.Code
		if ee.Err == nil {
			return code
		}
	case core.IsInvalid(err), errors.Is(err, attest.ErrInvalid), errors.Is(err, opinions.ErrInvalid), errors.Is(err, config.ErrInvalid):
		code = ExitUsage
	case isCobraUsage(err):
		code = ExitUsage
		err = fmt.Errorf("%w (see lebowski --help)", err)
	}
	fmt.Fprintf(g.errOut, "lebowski: %v\n", err)
	return code
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "lebowski",
		Short: "Verify, rebuild and inspect Lebowski packages",
		Long: `lebowski rebuilds Debian packages under public opinions in a pinned
container, compares SHA256 with what independent builders attest, and tells
you whether a .deb is safe to install. Nobody has to be trusted.

Exit codes: 0 ok / SAFE TO INSTALL, 1 mismatch / DO NOT INSTALL / UNVERIFIED,
2 usage or input error, 3 environment error. See docs/CLI.md.`,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			switch {
			case g.verbose >= 2:
				level = slog.LevelDebug
			case g.verbose == 1:
				level = slog.LevelInfo
			}
			g.log = slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: level}))
			g.socketSet = cmd.Flags().Changed("socket") || os.Getenv("LEBOWSKI_SOCKET") != ""
			g.dataDirSet = cmd.Flags().Changed("data-dir") || os.Getenv("LEBOWSKI_DATA_DIR") != ""
			return nil
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErr("%v (see %s --help)", err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", "", "node data directory (default $LEBOWSKI_DATA_DIR, $XDG_DATA_HOME/lebowski or ~/.local/share/lebowski)")
	pf.StringVar(&g.opinionsDir, "opinions", "", "opinions directory (default the config's opinions_dir, $LEBOWSKI_OPINIONS, ./opinions, or beside the binary)")
	pf.StringVar(&g.socket, "socket", os.Getenv("LEBOWSKI_SOCKET"), "lebowskid API socket; when given it must answer (default the config's api_socket or <data-dir>/lebowskid.sock, tried quietly)")
	pf.BoolVar(&g.json, "json", false, "machine-readable JSON output")
	pf.CountVarP(&g.verbose, "verbose", "v", "log more (-v info, -vv debug)")
	root.AddCommand(
		newKeyCmd(g),
		newOpinionCmd(g),
		newClaimsCmd(g),
		newInfoCmd(g),
		newBuildCmd(g),
		newVerifyCmd(g),
		newDiffCmd(g),
		newImageCmd(g),
		newPeersCmd(g),
		newSubscribeCmd(g),
		newStatusCmd(g),
		newBlobCmd(g),
		newAptCheckCmd(g),
		newAptSourceCmd(g),
		newFetchCmd(g),
		newStoreCmd(g),
	)
	groups(root)
	return root
}

// groups makes every command that only holds subcommands fail with a
// usage error (exit 2 and a hint) when called alone or with an unknown
// subcommand, instead of printing help and exiting 0.
func groups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		groups(sub)
	}
	if c.HasParent() && c.HasSubCommands() && c.RunE == nil && c.Run == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			if len(args) == 0 {
				return usageErr("%s needs a subcommand: %s (see %s --help)", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
			}
			return usageErr("unknown command %q for %q: want one of %s (see %s --help)", args[0], cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
		}
	}
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "accepts ", "requires at least", "requires at most", "invalid argument", "unknown shorthand flag", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// config loads the node's configuration once: <data-dir>/config.yaml,
// then --opinions.
func (g *globals) config() (*config.Config, error) {
	if g.cfg != nil {
		return g.cfg, nil
	}
	cfg, err := config.Load(g.dataDir, "")
	if err != nil {
		return nil, err
	}
	if g.opinionsDir != "" {
		cfg.OpinionsDir = g.opinionsDir
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g.cfg = cfg
	return cfg, nil
}

func (g *globals) layout() (config.Layout, error) {
	cfg, err := g.config()
	if err != nil {
		return config.Layout{}, err
	}
	return cfg.Layout(), nil
}

// access says what a command does with the node.
type access int

const (
	read    access = iota // read only: the node must exist
	write                 // may create the node's store
	withKey               // writes signed by the node's builder key (created if missing)
)

// api returns the node's API: the running daemon when it answers on the
// socket (which must answer when --socket was given), else a node over
// the local store, opened for this command only.
func (g *globals) api(ctx context.Context, a access) (core.API, func(), error) {
	c, err := g.dial(ctx)
	if c != nil || err != nil {
		return c, func() {}, err
	}
	if a == read && !g.dataDirSet {
		if c, err := g.dialSystem(ctx); c != nil || err != nil {
			return c, func() {}, err
		}
	}
	n, done, err := g.local(a)
	if err != nil {
		return nil, nil, err
	}
	return n, done, nil
}

// dialSystem answers a read command of a user who has no node of their
// own from the system daemon's public socket (config.SystemSocketPath):
// nil when there is an own node or no system daemon, an error when the
// socket refuses this user.
func (g *globals) dialSystem(ctx context.Context) (*rpc.Client, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	if cfg.Layout().CheckExists() == nil {
		return nil, nil
	}
	sock := config.SystemSocketPath()
	c, err := rpc.Dial(ctx, sock)
	switch {
	case err == nil:
		g.log.Info("using the system lebowskid", "socket", sock)
		return c, nil
	case errors.Is(err, rpc.ErrPermission):
		return nil, envErr(fmt.Errorf("%w: the system daemon's socket is for group %s; join it with `sudo adduser $USER %s` and log in again (or use your own node with --data-dir)", err, config.DefaultPublicSocketGroup, config.DefaultPublicSocketGroup))
	}
	return nil, nil
}

// dial returns a client of the running daemon, nil when none answers on
// the default socket, or an error when --socket was given and does not
// answer.
func (g *globals) dial(ctx context.Context) (*rpc.Client, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	sock := cfg.Socket()
	if g.socket != "" {
		sock = g.socket
	}
	c, err := rpc.Dial(ctx, sock)
	if err == nil {
		g.log.Info("using lebowskid", "socket", sock)
		return c, nil
	}
	if g.socketSet {
		return nil, envErr(fmt.Errorf("%w: start it, or drop --socket / $LEBOWSKI_SOCKET to use the store in %s directly", err, cfg.DataDir))
	}
	return nil, nil
}

// local opens the node's own store (read-only for reads, which then need
// an existing node) and returns a core node over it.
func (g *globals) local(a access) (*core.Node, func(), error) {
	cfg, err := g.config()
	if err != nil {
		return nil, nil, err
	}
	l := cfg.Layout()
	mode := core.ReadWrite
	if a == read {
		if err := l.CheckExists(); err != nil {
			if !g.dataDirSet {
				err = fmt.Errorf("%w; no system lebowskid answers on %s either", err, config.SystemSocketPath())
			}
			return nil, nil, envErr(err)
		}
		mode = core.ReadOnly
	} else if err := l.Ensure(); err != nil {
		return nil, nil, envErr(err)
	}
	nopts := []core.Option{core.WithVersion(version.String())}
	id, created, err := core.LoadIdentity(l, a == withKey, "")
	switch {
	case err == nil:
		nopts = append(nopts, core.WithIdentity(id))
		if created {
			fmt.Fprintf(g.errOut, "generated builder key %s\n", id.Fingerprint())
		}
	case a == withKey:
		return nil, nil, envErr(err)
	}
	n, err := core.Open(cfg, mode, g.log, nopts...)
	if errors.Is(err, core.ErrStoreBusy) {
		return nil, nil, envErr(fmt.Errorf("%w: lebowskid probably runs with this data dir but its socket %s did not answer; pass --socket or stop it", err, cfg.Socket()))
	}
	if err != nil {
		return nil, nil, envErr(err)
	}
	return n, n.Close, nil
}

// printJSON writes v indented.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (g *globals) printf(format string, a ...any) { fmt.Fprintf(g.out, format, a...) }
