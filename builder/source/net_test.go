package source

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFetchRealBookwormHello talks to deb.debian.org with the host's
// Debian archive keyring. It runs only with LEBOWSKI_NET=1.
func TestFetchRealBookwormHello(t *testing.T) {
	if os.Getenv("LEBOWSKI_NET") != "1" {
		t.Skip("set LEBOWSKI_NET=1 to fetch hello from deb.debian.org")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cache := t.TempDir()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f, err := New(cache, WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	src, err := f.Fetch(ctx, "bookworm", "hello", "2.10-3")
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	if src.Package != "hello" || src.Version != "2.10-3" || src.DscName != "hello_2.10-3.dsc" {
		t.Fatalf("got %s %s %s", src.Package, src.Version, src.DscName)
	}
	if src.DscSHA256 != sha256File(t, src.DscPath) {
		t.Fatalf("DscSHA256 %s does not match the file", src.DscSHA256)
	}
	// Known value: sha256 of hello_2.10-3.dsc as published in bookworm.
	const wantDsc = "75296f5ef618ae2f1849e22b142a2b5ab52c452ebefa4e7b0564c44617db3790"
	if src.DscSHA256 != wantDsc {
		t.Fatalf("DscSHA256 = %s, want %s", src.DscSHA256, wantDsc)
	}
	if len(src.Files) != 3 { // orig tarball, its upstream signature, debian tarball
		t.Fatalf("want 3 files, got %+v", src.Files)
	}
	for _, fl := range src.Files {
		if got := sha256File(t, fl.Path); got != fl.SHA256 {
			t.Fatalf("%s: %s != %s", fl.Name, got, fl.SHA256)
		}
	}
	if src.Format != "3.0 (quilt)" || src.BuildDepends == "" || src.Signer == "" {
		t.Fatalf("fields: %+v", src)
	}
	start = time.Now()
	again, err := f.Fetch(ctx, "bookworm", "hello", "2.10-3")
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	if again.DscSHA256 != src.DscSHA256 {
		t.Fatal("second fetch differs")
	}
	if _, err := exec.LookPath("dpkg-source"); err == nil {
		out := filepath.Join(t.TempDir(), "hello")
		// --no-check: the chain above already authenticated every file.
		cmd := exec.CommandContext(ctx, "dpkg-source", "--no-check", "-x", filepath.Join(again.Dir, again.DscName), out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg-source -x: %v\n%s", err, b)
		}
		if _, err := os.Stat(filepath.Join(out, "debian", "rules")); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("hello 2.10-3: dsc sha256 %s, signer %s, build-depends %q, cold %s, warm %s",
		src.DscSHA256, src.Signer, src.BuildDepends, cold, warm)
}
