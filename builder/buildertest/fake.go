// Package buildertest is the fake builder of daemon and integration tests:
// it "builds" deterministically from the recipe, without podman or a
// Debian mirror, so every node that builds an opinion gets the same
// artifacts (or, with Evil set, a different hash).
package buildertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/debfile/debfiletest"
)

// Fake is a builder.Builder whose artifact is "deb of <recipe id>" (a
// placeholder .deb), or a real reproducible .deb with RealDebs set. Its
// zero value builds honestly at once. Set its fields before the daemon
// runs; Builds may be read at any time.
type Fake struct {
	// Builds counts the calls of Build.
	Builds atomic.Int32
	// Evil makes the artifact differ from the honest one (a compromised
	// builder).
	Evil bool
	// RealDebs, when set, makes real .deb files (dpkg-deb, reproducible)
	// instead of placeholder bytes.
	RealDebs testing.TB
	// Flaky makes every build's bytes differ (an unreproducible package);
	// NotApplicable makes the opinion not apply (a failed build).
	Flaky, NotApplicable bool
	// Delay makes every build take this long; Hang makes builds run until
	// the daemon stops (a node that dies mid-build).
	Delay time.Duration
	Hang  bool
	// Lines are written to the request's progress callback first; then,
	// with Release set, the build waits for it to be closed.
	Lines   []string
	Release chan struct{}
}

// Build implements builder.Builder.
func (f *Fake) Build(ctx context.Context, req builder.Request) (*builder.Result, error) {
	f.Builds.Add(1)
	for _, l := range f.Lines {
		if req.Progress != nil {
			req.Progress(l)
		}
	}
	if f.Release != nil {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.Release:
		}
	}
	if f.Hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.Delay > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(f.Delay):
		}
	}
	o := req.Opinion
	r := attest.Recipe{Source: req.Package, DebianVersion: o.Debian.Version, Suite: o.Debian.Suite, Arch: "amd64", OpinionCID: o.CID(),
		SourceSHA256: Hex64("src"), ImageDigest: "sha256:" + Hex64("img")}
	content := "deb of " + r.ID()
	if f.Evil {
		content += " with a backdoor"
	}
	n := f.Builds.Load()
	if f.Flaky {
		content += fmt.Sprintf(" built at step %d", n)
	}
	if f.NotApplicable {
		return &builder.Result{Recipe: r, BinaryVersion: o.BinaryVersion().String(), Status: attest.ResultFailed,
			FailReason: "opinion patch fix.patch does not apply to hello", Log: []byte("patching: FAILED\n")}, fmt.Errorf("build hello: %w: patch", builder.ErrNotApplicable)
	}
	name := fmt.Sprintf("%s_%s_amd64.deb", req.Package, o.BinaryVersion().String())
	dir, err := os.MkdirTemp("", fmt.Sprintf("fakebuild-%d-", n))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	if f.RealDebs != nil {
		src := req.Package
		if f.Evil {
			src += " (9.9-evil)"
		}
		built := debfiletest.Build(f.RealDebs, dir, debfiletest.Package{Name: req.Package, Version: o.BinaryVersion().String(), Source: src})
		b, err := os.ReadFile(built)
		if err != nil {
			return nil, err
		}
		content = string(b)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return nil, err
	}
	return &builder.Result{Recipe: r, BinaryVersion: o.BinaryVersion().String(), Status: attest.ResultSuccess,
		Artifacts: []builder.Output{{Name: name, SHA256: Hex64(content), Path: path}}, Log: []byte("fake build log")}, nil
}

// Hex64 is the hex sha256 of s (the fake artifacts' hashes).
func Hex64(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
