package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDefaultDataDirFindsSystemNode: without $LEBOWSKI_DATA_DIR and
// $XDG_DATA_HOME, a user with a node of their own uses it; one without uses
// the system node (the Debian package's) when its config is readable.
func TestDefaultDataDirFindsSystemNode(t *testing.T) {
	home, sys := t.TempDir(), t.TempDir()
	t.Setenv("LEBOWSKI_DATA_DIR", "")
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", home)
	old := SystemDataDir
	SystemDataDir = sys
	t.Cleanup(func() { SystemDataDir = old })
	user := filepath.Join(home, ".local", "share", "lebowski")

	if got := DefaultDataDir(); got != user {
		t.Fatalf("no system node: got %s, want %s", got, user)
	}
	if err := os.WriteFile(filepath.Join(sys, "config.yaml"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := DefaultDataDir(); got != sys {
		t.Fatalf("system node, no user node: got %s, want %s", got, sys)
	}
	if err := os.MkdirAll(user, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := DefaultDataDir(); got != user {
		t.Fatalf("user node and system node: got %s, want the user's %s", got, user)
	}
	t.Setenv("LEBOWSKI_DATA_DIR", "/elsewhere")
	if got := DefaultDataDir(); got != "/elsewhere" {
		t.Fatalf("$LEBOWSKI_DATA_DIR: got %s", got)
	}
}
