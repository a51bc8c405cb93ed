package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Layout names the files of a node's data directory.
type Layout struct{ Dir string }

// DefaultDataDir is $LEBOWSKI_DATA_DIR, $XDG_DATA_HOME/lebowski,
// ~/.local/share/lebowski, or the system node's /var/lib/lebowski when the
// user has no node of their own and may read it (or has no home).
func DefaultDataDir() string {
	if d := os.Getenv("LEBOWSKI_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "lebowski")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return SystemDataDir
	}
	user := filepath.Join(home, ".local", "share", "lebowski")
	if _, err := os.Stat(user); err != nil {
		// No node of this user's own: the system node (the Debian
		// package's, run by the lebowskid unit) when this user may read
		// it — root; others reach it through its public socket.
		if _, err := os.Stat(filepath.Join(SystemDataDir, "config.yaml")); err == nil {
			return SystemDataDir
		}
	}
	return user
}

// SystemDataDir is the data directory of the system node: the one the
// lebowskid unit and the Debian package use.
var SystemDataDir = "/var/lib/lebowski"

// DefaultOpinionsDir is $LEBOWSKI_OPINIONS, ./opinions, the opinions
// directory beside (or above) the running binary, or
// /usr/share/lebowski/opinions.
func DefaultOpinionsDir() string {
	if d := os.Getenv("LEBOWSKI_OPINIONS"); d != "" {
		return d
	}
	cands := []string{"opinions"}
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		cands = append(cands, filepath.Join(d, "opinions"), filepath.Join(d, "..", "opinions"), filepath.Join(d, "..", "share", "lebowski", "opinions"))
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && fi.IsDir() {
			if abs, err := filepath.Abs(c); err == nil {
				return abs
			}
			return c
		}
	}
	return "/usr/share/lebowski/opinions"
}

func (l Layout) BuilderKey() string { return filepath.Join(l.Dir, "builder.key") }
func (l Layout) PeerKey() string    { return filepath.Join(l.Dir, "peer.key") }

// NextBuilderKey holds the key `lebowski key rotate` installs, from its
// generation until it replaces builder.key (a rotation cut short resumes
// with it).
func (l Layout) NextBuilderKey() string { return filepath.Join(l.Dir, "builder.key.next") }

// RetiredBuilderKey is where `lebowski key rotate` keeps the private key
// it revoked and replaced (fpr is its fingerprint).
func (l Layout) RetiredBuilderKey(fpr string) string {
	return filepath.Join(l.Dir, "builder.key."+fpr+".revoked")
}
func (l Layout) StoreDB() string      { return filepath.Join(l.Dir, "store.db") }
func (l Layout) Socket() string       { return filepath.Join(l.Dir, "lebowskid.sock") }
func (l Layout) Config() string       { return filepath.Join(l.Dir, "config.yaml") }
func (l Layout) BuildDir() string     { return filepath.Join(l.Dir, "builder") }
func (l Layout) DefaultCache() string { return filepath.Join(l.Dir, "cache") }

// FetchedOpinions holds opinion bundles fetched from peers by CID, laid
// out like an opinions directory (<package>/<name>.yaml, patches, lock).
func (l Layout) FetchedOpinions() string { return filepath.Join(l.Dir, "opinions") }

// Subscriptions remembers the subscriptions changed at runtime.
func (l Layout) Subscriptions() string { return filepath.Join(l.Dir, "subscriptions.json") }

// Ensure creates the data directory (0700).
func (l Layout) Ensure() error {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", l.Dir, err)
	}
	return nil
}

// ErrNoNode means the data directory holds no node yet.
var ErrNoNode = errors.New("no Lebowski node")

// CheckExists reports ErrNoNode when the data directory or its store is
// missing, so read commands say so instead of creating an empty node (as
// `ipfs` says "run init").
func (l Layout) CheckExists() error {
	if _, err := os.Stat(l.StoreDB()); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w at %s (no %s): run `lebowski key gen` or start `lebowskid` to create one, or pass --data-dir", ErrNoNode, l.Dir, filepath.Base(l.StoreDB()))
		}
		return fmt.Errorf("data dir %s: %w", l.Dir, err)
	}
	return nil
}
