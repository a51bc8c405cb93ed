// Package cli implements the `lebowski` command line.
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
	"github.com/lebowski-dist/lebowski/cmd/internal/node"
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
	out         io.Writer
	errOut      io.Writer
	log         *slog.Logger
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
	code := ExitUsage
	switch {
	case errors.As(err, &ee):
		code = ee.Code
		if ee.Err == nil {
			return code
		}
	case errors.Is(err, attest.ErrInvalid), errors.Is(err, opinions.ErrInvalid):
		code = ExitUsage
	case errors.Is(err, context.Canceled):
		code = ExitEnv
	default:
		code = ExitEnv
		if isCobraUsage(err) {
			code = ExitUsage
		}
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
you whether a .deb is safe to install. Nobody has to be trusted.`,
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
			if g.dataDir == "" {
				g.dataDir = node.DefaultDataDir()
			}
			if g.opinionsDir == "" {
				g.opinionsDir = node.DefaultOpinionsDir()
			}
			if g.socket == "" {
				g.socket = g.layout().Socket()
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr("%v", err) })
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", os.Getenv("LEBOWSKI_DATA_DIR"), "node data directory (default $LEBOWSKI_DATA_DIR, $XDG_DATA_HOME/lebowski or ~/.local/share/lebowski)")
	pf.StringVar(&g.opinionsDir, "opinions", os.Getenv("LEBOWSKI_OPINIONS"), "opinions directory (default $LEBOWSKI_OPINIONS, ./opinions, or beside the binary)")
	pf.StringVar(&g.socket, "socket", os.Getenv("LEBOWSKI_SOCKET"), "lebowskid API socket (default <data-dir>/lebowskid.sock)")
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
	)
	return root
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "accepts ", "requires at least", "requires at most", "invalid argument", "unknown shorthand flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// printJSON writes v indented.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (g *globals) printf(format string, a ...any) { fmt.Fprintf(g.out, format, a...) }
