package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/cmd/internal/version"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/p2p"
)

// unitDataDir is the data directory of the systemd unit
// (cmd/lebowskid/lebowskid.service).
const unitDataDir = "/var/lib/lebowski"

// newInitCmd is `lebowskid init`: it sets up a node's data directory
// (builder key, peer key, a commented config file) without starting it,
// and says what to do next. It never replaces a key; the config only with
// --force. exitCode gets 1 on a failure (flag and argument errors are 2,
// set by Main).
func newInitCmd(exitCode *int) *cobra.Command {
	var dataDir, cfgPath string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Set up a node: builder key, peer key and a commented config file",
		Long: `init prepares a node's data directory without starting the daemon:
it generates the OpenPGP builder key (builder.key) and the libp2p peer key
(peer.key) when they are missing, writes a commented config file (default
<data-dir>/config.yaml, the file lebowskid reads) when it is missing, prints
the builder key's fingerprint and what to do next. Running it again changes
nothing and says what exists. --force replaces the config file (the old one
is kept as <config>.bak); keys are never replaced (see lebowski key gen
--force).

Exit codes: 0 done (or everything existed), 1 failed (what and where is
printed), 2 bad flags or arguments.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := runInit(cmd.OutOrStdout(), dataDir, cfgPath, force)
			if err != nil {
				*exitCode = 1
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", "", "data directory: keys, store, socket (default $LEBOWSKI_DATA_DIR, $XDG_DATA_HOME/lebowski or ~/.local/share/lebowski; the unit uses "+unitDataDir+")")
	fl.StringVar(&cfgPath, "config", "", "config file to write (default <data-dir>/config.yaml, which lebowskid reads without --config)")
	fl.BoolVar(&force, "force", false, "replace an existing config file (kept as <config>.bak); keys are never replaced")
	return cmd
}

// runInit does `lebowskid init` and prints its report to out.
func runInit(out io.Writer, dataDir, cfgPath string, force bool) error {
	if dataDir == "" {
		dataDir = config.DefaultDataDir()
	}
	path := cfgPath
	if path == "" {
		path = config.Layout{Dir: dataDir}.Config()
	}

	// The config: kept if it exists (and must load: the daemon would
	// refuse it), else the template with this node's defaults.
	cfgState := "written"
	_, statErr := os.Stat(path)
	exists := statErr == nil
	if statErr != nil && !errors.Is(statErr, os.ErrNotExist) && !errors.Is(statErr, syscall.ENOTDIR) {
		return fmt.Errorf("config %s: %w; choose another place with --config or --data-dir", path, statErr)
	}
	var cfg *config.Config
	if exists && !force {
		c, err := config.Load(dataDir, cfgPath)
		if err == nil {
			c.Defaults()
			err = c.Validate()
		}
		if err != nil {
			return fmt.Errorf("the existing config %s does not load, so lebowskid would refuse to start: %w; fix it, or rerun with --force to replace it with a fresh one (the old one is kept as %s.bak)", path, err, filepath.Base(path))
		}
		cfg, cfgState = c, "exists, kept; --force replaces it"
	} else {
		cfg = &config.Config{DataDir: dataDir}
		cfg.Defaults()
	}

	l := cfg.Layout()
	if err := l.Ensure(); err != nil {
		return fmt.Errorf("cannot create the node's %w; run as a user who may write there (root for %s) or choose another directory with --data-dir", err, unitDataDir)
	}
	if !exists || force {
		tmpl, err := configTemplate(cfg)
		if err != nil {
			return err
		}
		backup, err := writeConfig(path, tmpl, exists)
		if err != nil {
			return err
		}
		if backup != "" {
			cfgState = "replaced; the old one is " + backup
		}
		// What was written must load as the daemon loads it.
		c, err := config.Load(dataDir, cfgPath)
		if err == nil {
			c.Defaults()
			err = c.Validate()
		}
		if err != nil {
			return fmt.Errorf("the config just written to %s does not load (a bug, please report it): %w", path, err)
		}
	}

	keyState := "generated"
	if _, err := os.Stat(l.BuilderKey()); err == nil {
		keyState = "exists, kept"
	}
	id, _, err := core.LoadIdentity(l, true, "Lebowski builder")
	if err != nil {
		return fmt.Errorf("builder key %s: %w", l.BuilderKey(), err)
	}
	peerState := "generated"
	if _, err := os.Stat(l.PeerKey()); err == nil {
		peerState = "exists, kept"
	}
	sk, err := p2p.LoadOrCreateIdentity(l.PeerKey())
	if err != nil {
		return fmt.Errorf("peer key %s: %w", l.PeerKey(), err)
	}
	pid, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return fmt.Errorf("peer key %s: %w", l.PeerKey(), err)
	}

	fpr := id.Fingerprint()
	cli := "lebowski"
	if l.Dir != config.DefaultDataDir() {
		cli += " --data-dir " + shellQuote(l.Dir)
	}
	daemonCmd := "lebowskid --data-dir " + shellQuote(l.Dir)
	if cfgPath != "" && cfgPath != l.Config() {
		daemonCmd += " --config " + shellQuote(cfgPath)
	}
	w := &errWriter{w: out}
	w.printf("lebowskid init: node in %s\n", l.Dir)
	w.printf("  config       %s (%s)\n", path, cfgState)
	w.printf("  builder key  %s (%s)\n", l.BuilderKey(), keyState)
	w.printf("  fingerprint  %s\n", fpr)
	w.printf("  peer key     %s (%s)\n", l.PeerKey(), peerState)
	w.printf("  peer id      %s\n", pid)
	w.printf("\nShare your builder key, so others can trust your rebuilds:\n")
	w.printf("  %s key export > %s.asc\n", cli, fpr)
	w.printf("\nNext steps:\n")
	w.printf("  1. Start the daemon:\n")
	if l.Dir == unitDataDir {
		w.printf("       systemctl enable --now lebowskid   (the unit in cmd/lebowskid/lebowskid.service; docs/DAEMON.md)\n")
		w.printf("     or in a terminal:\n")
	}
	w.printf("       %s\n", daemonCmd)
	w.printf("  2. Subscribe to an opinion (rebuilt and attested by this node):\n")
	w.printf("       %s subscribe hello/o3          (or list it under subscribe: in %s)\n", cli, path)
	w.printf("  3. Trust another builder's key:\n")
	w.printf("       %s key import --trust trusted THEIR-KEY.asc   (or add the fingerprint to trusted_keys:)\n", cli)
	w.printf("  Peers to bootstrap from go under bootstrap: in %s.\n", path)
	return w.err
}

// writeConfig writes b to path: a new file, or (replace) over the
// existing one, which is first renamed to path.bak.
func writeConfig(path string, b []byte, replace bool) (backup string, err error) {
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("write config %s: %w; choose a writable place with --config or --data-dir", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if replace {
		backup = path + ".bak"
		if err := os.Rename(path, backup); err != nil {
			return fail(fmt.Errorf("keep the old config: %w", err))
		}
	} else if err := os.Link(tmp.Name(), path); err != nil { // never over a file that appeared meanwhile
		return fail(err)
	} else {
		return "", nil
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(err)
	}
	return backup, nil
}

// configTemplate is the commented config file for cfg (after Defaults):
// the lists an operator fills in, then every common setting commented out
// with its default, as the config package computes it.
func configTemplate(cfg *config.Config) ([]byte, error) {
	var b bytes.Buffer
	err := configTmpl.Execute(&b, map[string]any{"Version": version.String(), "C": cfg})
	if err != nil {
		return nil, fmt.Errorf("config template: %w", err)
	}
	return b.Bytes(), nil
}

var configTmpl = template.Must(template.New("config").Funcs(template.FuncMap{
	"q":    yamlScalar,
	"list": yamlList,
	"dur":  shortDuration,
	"deref": func(v any) any {
		switch p := v.(type) {
		case *bool:
			return *p
		case *int:
			return *p
		}
		return v
	},
}).Parse(`# lebowskid configuration, written by ` + "`lebowskid init`" + ` ({{.Version}}).
# Every key is optional. A commented "# key: value" line shows the default;
# remove the "# " to change it. Unknown keys are errors; command-line flags
# override this file. Every key is described in docs/DAEMON.md. Restart the
# daemon after editing (systemctl restart lebowskid).

# Peers to connect to at start: libp2p multiaddrs ending in /p2p/<peer id>,
# one per line, such as
#   - /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...
# Lebowski has no built-in bootstrap list: ask someone who runs a node for
# an address ` + "`lebowski peers`" + ` prints on their machine. With none, this node
# finds peers on the local network (mdns) and others may bootstrap from it.
bootstrap: []

# Opinion topics to follow and rebuild, package/opinion such as hello/o3
# ("pv" or "pv/vanilla" is the unmodified Debian build). ` + "`lebowski subscribe`" + `
# adds more while the daemon runs.
subscribe: []

# Builders whose agreeing claims make a package SAFE TO INSTALL: OpenPGP
# fingerprints (` + "`lebowski key import --trust trusted KEY.asc`" + ` does the same).
trusted_keys: []

# listen: {{list .C.Listen}}
# mdns: {{.C.MDNS | deref}}
# dht: {{.C.DHT}}
# trust_hops: {{.C.TrustHops | deref}}
# threshold: {{.C.Threshold}}
# min_trusted: {{.C.MinTrusted}}
# opinions_dir: {{q .C.OpinionsDir}}
# cache_dir: {{q .C.CacheDir}}
# mirror: {{q .C.Mirror}}
# snapshot_url: {{q .C.SnapshotURL}}   # e.g. http://snapshot.debian.org
# sync_interval: {{dur .C.SyncEvery}}
# key_announce_interval: {{dur .C.KeyAnnounceInterval}}
# metrics_addr: {{q .C.MetricsAddr}}   # e.g. 127.0.0.1:9464
# The status page (HTML, /status.json, live /events); keep it on loopback.
# status_addr: {{q .C.StatusAddr}}   # e.g. 127.0.0.1:9466
# builds:
#   enabled: {{.C.Builds.Enabled | deref}}
#   concurrency: {{.C.Builds.Concurrency}}
#   timeout: {{dur .C.Builds.Timeout}}
#   # Rebuild work is shared: skip recipes that this many trusted builders
#   # built or are building; rebuild recipes whose claims are older than
#   # reverify_after (docs/SCHEDULER.md).
#   target: {{.C.Builds.Target}}
#   reverify_after: {{dur .C.Builds.ReverifyAfter}}
#   intent_ttl: {{dur .C.Builds.IntentTTL}}
# log_level: {{q .C.LogLevel}}
# log_format: {{q .C.LogFormat}}
`))

var plainScalar = regexp.MustCompile(`^[A-Za-z0-9/][A-Za-z0-9/._:+=@-]*$`)

// yamlScalar is s as a YAML scalar: plain when that is unambiguous,
// else double-quoted.
func yamlScalar(s string) string {
	switch strings.ToLower(s) {
	case "", "true", "false", "yes", "no", "on", "off", "null", "~":
		return strconv.Quote(s)
	}
	if plainScalar.MatchString(s) && !strings.Contains(s, ": ") {
		return s
	}
	return strconv.Quote(s)
}

func yamlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = yamlScalar(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// shortDuration is d without zero units (1h, not 1h0m0s).
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// shellQuote quotes s for a shell command line when it needs it.
func shellQuote(s string) string {
	if plainScalar.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}
