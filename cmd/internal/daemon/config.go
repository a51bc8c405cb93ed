package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is lebowskid's configuration (YAML file + flags). Every field is
// optional; Defaults fills in what is missing.
type Config struct {
	DataDir     string        `yaml:"data_dir"`
	OpinionsDir string        `yaml:"opinions_dir"`
	CacheDir    string        `yaml:"cache_dir"` // sources + images; nodes on one machine may share it
	Listen      []string      `yaml:"listen"`    // libp2p multiaddrs
	Bootstrap   []string      `yaml:"bootstrap"` // /ip4/…/tcp/…/p2p/<id>
	MDNS        *bool         `yaml:"mdns"`
	DHT         bool          `yaml:"dht"`
	Subscribe   []string      `yaml:"subscribe"`    // package/opinion
	TrustedKeys []string      `yaml:"trusted_keys"` // OpenPGP fingerprints
	TrustHops   int           `yaml:"trust_hops"`   // certification depth for trust
	Threshold   float64       `yaml:"threshold"`    // SAFE TO INSTALL score threshold (0 = consensus.DefaultThreshold)
	APISocket   string        `yaml:"api_socket"`
	MetricsAddr string        `yaml:"metrics_addr"` // opt-in, e.g. 127.0.0.1:9464
	Mirror      string        `yaml:"mirror"`
	SyncEvery   time.Duration `yaml:"sync_interval"`
	Builds      BuildConfig   `yaml:"builds"`
	LogLevel    string        `yaml:"log_level"`  // debug|info|warn|error
	LogFormat   string        `yaml:"log_format"` // text|json
}

// BuildConfig bounds the rebuild queue.
type BuildConfig struct {
	Enabled     *bool         `yaml:"enabled"`     // default true
	Concurrency int           `yaml:"concurrency"` // default 1
	Queue       int           `yaml:"queue"`       // default 64
	Timeout     time.Duration `yaml:"timeout"`     // default 45m
	PodmanURL   string        `yaml:"podman_url"`  // default: start a private podman service
}

var reSub = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{1,62}/[a-z0-9][a-z0-9-]{0,63}$`)
var reFpr = regexp.MustCompile(`^[0-9A-F]{40}$|^[0-9A-F]{64}$`)

// LoadConfig reads a YAML config strictly (unknown keys are errors). A
// missing file is not an error when optional is set.
func LoadConfig(path string, optional bool) (*Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return &c, nil
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// Defaults fills in unset fields.
func (c *Config) Defaults() {
	if len(c.Listen) == 0 {
		c.Listen = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}
	}
	if c.MDNS == nil {
		t := true
		c.MDNS = &t
	}
	if c.TrustHops == 0 {
		c.TrustHops = 1
	}
	if c.Mirror == "" {
		c.Mirror = "http://deb.debian.org/debian"
	}
	if c.SyncEvery == 0 {
		c.SyncEvery = 30 * time.Second
	}
	if c.Builds.Enabled == nil {
		t := true
		c.Builds.Enabled = &t
	}
	if c.Builds.Concurrency == 0 {
		c.Builds.Concurrency = 1
	}
	if c.Builds.Queue == 0 {
		c.Builds.Queue = 64
	}
	if c.Builds.Timeout == 0 {
		c.Builds.Timeout = 45 * time.Minute
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
}

// Validate reports every problem in the config at once.
func (c *Config) Validate() error {
	var errs []error
	for _, s := range c.Subscribe {
		if !reSub.MatchString(s) {
			errs = append(errs, fmt.Errorf("subscribe: %q is not <package>/<opinion>", s))
		}
	}
	for _, k := range c.TrustedKeys {
		if !reFpr.MatchString(k) {
			errs = append(errs, fmt.Errorf("trusted_keys: %q is not an upper-case OpenPGP fingerprint", k))
		}
	}
	if c.Builds.Concurrency < 0 || c.Builds.Concurrency > 16 {
		errs = append(errs, fmt.Errorf("builds.concurrency: %d not in 1..16", c.Builds.Concurrency))
	}
	if c.Builds.Queue < 0 || c.Builds.Queue > 10000 {
		errs = append(errs, fmt.Errorf("builds.queue: %d not in 1..10000", c.Builds.Queue))
	}
	if c.Threshold < 0 || c.Threshold > 10 {
		errs = append(errs, fmt.Errorf("threshold: %v not in 0..10", c.Threshold))
	}
	if c.TrustHops < 0 || c.TrustHops > 5 {
		errs = append(errs, fmt.Errorf("trust_hops: %d not in 0..5", c.TrustHops))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not debug|info|warn|error", c.LogLevel))
	}
	return errors.Join(errs...)
}
