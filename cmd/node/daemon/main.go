package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/cmd/internal/version"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/spf13/cobra"
)

// Main runs lebowskid with args and returns its exit code: 0 after a clean
// shutdown, 2 for a bad config or flags, 3 when it could not start or
// failed while running; `lebowskid init` exits 0 when done, 1 when it
// failed and 2 for bad flags or arguments.
func Main(args []string) int { return run(args, os.Stdout, os.Stderr) }

// run is Main writing to stdout and stderr (tests capture them).
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var (
		cfgPath  string
		dataDir  string
		flagCfg  config.Config
		noBuild  bool
		mdns     bool
		noMDNS   bool
		exitCode int
	)
	cmd := &cobra.Command{
		Use:   "lebowskid",
		Short: "Lebowski's peer-to-peer rebuild verification daemon",
		Long: `lebowskid subscribes to opinion topics, rebuilds those packages in podman,
signs hash attestations, gossips them over libp2p, stores peers' claims and
derives consensus locally. Configuration: a YAML file (--config, default
<data-dir>/config.yaml) overridden by flags. See docs/DAEMON.md.

Exit codes: 0 stopped cleanly, 2 bad flags or configuration, 3 could not
start or failed while running.

Under systemd (Type=notify) it sends READY=1 once the network and the API
socket are up, RELOADING=1/READY=1 around a SIGHUP reload and STOPPING=1
when it shuts down. Set up a new node first with "lebowskid init".`,
		Version:       version.String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(dataDir, cfgPath)
			if err != nil {
				exitCode = 2
				return err
			}
			f := cmd.Flags()
			if f.Changed("listen") {
				cfg.Listen = flagCfg.Listen
			}
			if f.Changed("bootstrap") {
				cfg.Bootstrap = flagCfg.Bootstrap
			}
			if f.Changed("subscribe") {
				cfg.Subscribe = flagCfg.Subscribe
			}
			if f.Changed("trust") {
				cfg.TrustedKeys = append(cfg.TrustedKeys, flagCfg.TrustedKeys...)
			}
			for _, s := range []struct {
				name string
				dst  *string
				src  string
			}{{"opinions", &cfg.OpinionsDir, flagCfg.OpinionsDir}, {"api-socket", &cfg.APISocket, flagCfg.APISocket},
				{"metrics-addr", &cfg.MetricsAddr, flagCfg.MetricsAddr}, {"status-addr", &cfg.StatusAddr, flagCfg.StatusAddr}, {"mirror", &cfg.Mirror, flagCfg.Mirror}, {"snapshot-url", &cfg.SnapshotURL, flagCfg.SnapshotURL},
				{"cache-dir", &cfg.CacheDir, flagCfg.CacheDir}, {"podman-url", &cfg.Builds.PodmanURL, flagCfg.Builds.PodmanURL},
				{"log-level", &cfg.LogLevel, flagCfg.LogLevel}, {"log-format", &cfg.LogFormat, flagCfg.LogFormat},
				{"public-socket", &cfg.PublicSocket, flagCfg.PublicSocket}, {"public-socket-group", &cfg.PublicSocketGroup, flagCfg.PublicSocketGroup}} {
				if f.Changed(s.name) {
					*s.dst = s.src
				}
			}
			if f.Changed("concurrency") {
				cfg.Builds.Concurrency = flagCfg.Builds.Concurrency
			}
			if f.Changed("sync-interval") {
				cfg.SyncEvery = flagCfg.SyncEvery
			}
			if noBuild {
				off := false
				cfg.Builds.Enabled = &off
			}
			if mdns || noMDNS {
				v := mdns && !noMDNS
				cfg.MDNS = &v
			}
			if f.Changed("dht") {
				cfg.DHT = flagCfg.DHT
			}
			cfg.Defaults()
			if err := cfg.Validate(); err != nil {
				exitCode = 2
				return err
			}
			log := newLogger(cfg)
			sd := takeNotifySocket(log)
			d, err := New(ctx, cfg, log, withNotifier(sd))
			if err != nil {
				exitCode = 3
				return err
			}
			// SIGHUP: look the subscribed opinions up again.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				select {
				case <-d.Ready():
				case <-ctx.Done():
					return
				}
				for {
					select {
					case <-hup:
						log.Info("SIGHUP: reloading opinions")
						sd.send(reloading()...)
						d.Reload(ctx)
						sd.send(sdReady, "STATUS=ready (opinions reloaded)")
					case <-ctx.Done():
						return
					}
				}
			}()
			if err := d.Run(ctx); err != nil {
				exitCode = 3
				return err
			}
			log.Info("stopped")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfgPath, "config", "", "YAML config file (default <data-dir>/config.yaml if present)")
	fl.StringVar(&dataDir, "data-dir", "", "data directory: keys, store, socket (default $LEBOWSKI_DATA_DIR, $XDG_DATA_HOME/lebowski or ~/.local/share/lebowski)")
	fl.StringSliceVar(&flagCfg.Listen, "listen", nil, fmt.Sprintf("libp2p listen multiaddrs (default %s)", strings.Join(p2p.DefaultListenAddrs, ",")))
	fl.StringSliceVar(&flagCfg.Bootstrap, "bootstrap", nil, "bootstrap peers: /ip4/…/tcp/…/p2p/<peer id>")
	fl.StringSliceVar(&flagCfg.Subscribe, "subscribe", nil, "opinion topics to follow and rebuild: package/opinion")
	fl.StringSliceVar(&flagCfg.TrustedKeys, "trust", nil, "trusted builder fingerprints (added to the config's)")
	fl.StringVar(&flagCfg.OpinionsDir, "opinions", "", "opinions directory")
	fl.StringVar(&flagCfg.APISocket, "api-socket", "", "local API unix socket (default <data-dir>/lebowskid.sock)")
	fl.StringVar(&flagCfg.PublicSocket, "public-socket", "", "also serve the read-only API on this socket to group --public-socket-group (the unit uses "+config.SystemSocket+")")
	fl.StringVar(&flagCfg.PublicSocketGroup, "public-socket-group", "", "group allowed on --public-socket (default "+config.DefaultPublicSocketGroup+")")
	fl.StringVar(&flagCfg.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics here (e.g. 127.0.0.1:9464); off by default")
	fl.StringVar(&flagCfg.StatusAddr, "status-addr", "", "serve the status page (HTML, /status.json, /events) here (e.g. 127.0.0.1:9466); off by default")
	fl.StringVar(&flagCfg.Mirror, "mirror", "", "Debian mirror (default "+source.DefaultMirror+")")
	fl.StringVar(&flagCfg.SnapshotURL, "snapshot-url", "", "Debian snapshot archive for locked inputs the mirror no longer has (e.g. http://snapshot.debian.org)")
	fl.StringVar(&flagCfg.CacheDir, "cache-dir", "", "sources and images cache (default <data-dir>/cache; may be shared by nodes on one machine)")
	fl.StringVar(&flagCfg.Builds.PodmanURL, "podman-url", "", "podman API URL (default: start a private service)")
	fl.IntVar(&flagCfg.Builds.Concurrency, "concurrency", config.DefaultConcurrency, "concurrent rebuilds")
	fl.DurationVar(&flagCfg.SyncEvery, "sync-interval", 0, fmt.Sprintf("periodic catch-up with peers (default %s)", p2p.DefaultSyncInterval))
	fl.BoolVar(&noBuild, "no-build", false, "never rebuild (only gossip and store claims)")
	fl.BoolVar(&mdns, "mdns", false, "enable mDNS LAN discovery")
	fl.BoolVar(&noMDNS, "no-mdns", false, "disable mDNS LAN discovery")
	fl.BoolVar(&flagCfg.DHT, "dht", false, "enable the Kademlia DHT for topic peer discovery")
	fl.StringVar(&flagCfg.LogLevel, "log-level", "", "debug, info, warn or error (default "+config.DefaultLogLevel+")")
	fl.StringVar(&flagCfg.LogFormat, "log-format", "", "text or json (default "+config.DefaultLogFormat+")")
	cmd.AddCommand(newInitCmd(&exitCode))
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetArgs(args)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		exitCode = 2
		return fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
	})
	if c, err := cmd.ExecuteContextC(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.CommandPath(), err)
		if exitCode == 0 {
			exitCode = 2
			if errors.Is(err, context.Canceled) {
				exitCode = 0
			}
		}
		return exitCode
	}
	return 0
}

func newLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
