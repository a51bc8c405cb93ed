// Package node holds what the CLI and the daemon share: the data directory
// layout, the builder identity and opening the local store.
package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lebowski-dist/lebowski/attest"
)

// Layout names the files of a node's data directory.
type Layout struct{ Dir string }

// DefaultDataDir is $LEBOWSKI_DATA_DIR, $XDG_DATA_HOME/lebowski or
// ~/.local/share/lebowski.
func DefaultDataDir() string {
	if d := os.Getenv("LEBOWSKI_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "lebowski")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "/var/lib/lebowski"
	}
	return filepath.Join(home, ".local", "share", "lebowski")
}

func (l Layout) BuilderKey() string { return filepath.Join(l.Dir, "builder.key") }
func (l Layout) PeerKey() string    { return filepath.Join(l.Dir, "peer.key") }
func (l Layout) StoreDB() string    { return filepath.Join(l.Dir, "store.db") }
func (l Layout) Socket() string     { return filepath.Join(l.Dir, "lebowskid.sock") }
func (l Layout) Config() string     { return filepath.Join(l.Dir, "config.yaml") }
func (l Layout) BuildDir() string   { return filepath.Join(l.Dir, "builder") }
func (l Layout) SourceCache() string {
	return filepath.Join(l.Dir, "cache", "sources")
}

// Ensure creates the data directory (0700).
func (l Layout) Ensure() error {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", l.Dir, err)
	}
	return nil
}

// ErrNoIdentity means the node has no builder key yet.
var ErrNoIdentity = errors.New("no builder key")

// LoadIdentity loads the builder key; with create it generates one on
// first use.
func (l Layout) LoadIdentity(create bool, name string) (*attest.Identity, bool, error) {
	id, err := attest.LoadIdentity(l.BuilderKey())
	if err == nil {
		return id, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if !create {
		return nil, false, fmt.Errorf("%w in %s: run `lebowski key gen`", ErrNoIdentity, l.Dir)
	}
	if err := l.Ensure(); err != nil {
		return nil, false, err
	}
	id, err = attest.GenerateIdentity(name, "")
	if err != nil {
		return nil, false, err
	}
	if err := id.Save(l.BuilderKey(), false); err != nil {
		return nil, false, err
	}
	return id, true, nil
}

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
