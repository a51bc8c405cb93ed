package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/lebowski-dist/lebowski/builder/source"
)

// Env says how a node rebuilds: where it keeps work and caches, how it
// reaches the mirror and podman, and where progress goes.
type Env struct {
	WorkDir   string // per-run build outputs and the private podman service
	CacheDir  string // verified sources and build images; nodes on one machine may share it
	Mirror    string // "" = source.DefaultMirror
	PodmanURL string // "" = start a private podman service
	Timeout   time.Duration
	Log       *slog.Logger
	Progress  func(line string)
	// SourceProgress reports download progress.
	SourceProgress func(name string, done, total int64)
}

// Rebuilder is a connected podman builder with what it holds open.
type Rebuilder struct {
	*PodmanBuilder
	Images *ImageStore
	Src    *source.Fetcher
	pm     *Podman
}

// Open connects to podman (starting a private service if needed) and
// returns the real builder. Close releases it.
func Open(ctx context.Context, e Env) (*Rebuilder, error) {
	log := e.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sopts := []source.Option{source.WithLogger(log)}
	if e.Mirror != "" {
		sopts = append(sopts, source.WithMirror(e.Mirror))
	}
	if e.SourceProgress != nil {
		sopts = append(sopts, source.WithProgress(e.SourceProgress))
	}
	src, err := source.New(filepath.Join(e.CacheDir, "sources"), sopts...)
	if err != nil {
		return nil, err
	}
	pm, err := Connect(ctx, e.PodmanURL, WithServiceDir(e.WorkDir), WithConnectLogger(log))
	if err != nil {
		return nil, err
	}
	images := NewImageStore(e.CacheDir, pm, WithImageLogger(log), WithImageProgress(e.Progress))
	opts := []Option{WithLogger(log), WithImages(images)}
	if e.Progress != nil {
		opts = append(opts, WithProgress(e.Progress))
	}
	if e.Timeout > 0 {
		opts = append(opts, WithTimeout(e.Timeout))
	}
	b, err := New(e.WorkDir, src, pm, opts...)
	if err != nil {
		pm.Close()
		return nil, err
	}
	return &Rebuilder{PodmanBuilder: b, Images: images, Src: src, pm: pm}, nil
}

// Close stops the private podman service, if this process started it.
func (r *Rebuilder) Close() error { return r.pm.Close() }

// PrepareImage makes (or finds) the build image of a request without
// building: verified source → Build-Depends → manifest → image.
func (r *Rebuilder) PrepareImage(ctx context.Context, req Request) (*Image, error) {
	suite, version := req.Suite, req.Version
	if req.Opinion != nil {
		if suite == "" {
			suite = req.Opinion.Debian.Suite
		}
		if version == "" {
			version = req.Opinion.Debian.Version
		}
	}
	if suite == "" {
		suite = DefaultSuite
	}
	src, err := r.Src.Fetch(ctx, suite, req.Package, version)
	if err != nil {
		return nil, fmt.Errorf("image %s: fetch source: %w", req.Package, err)
	}
	deps, err := ResolveBuildDepends([]string{src.BuildDepends}, DefaultArch)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", req.Package, err)
	}
	return r.Images.Ensure(ctx, NewManifest(suite, req.Package, deps))
}

// ListImages reads the image records of a cache directory.
func ListImages(cacheDir string) ([]Image, error) {
	paths, err := filepath.Glob(filepath.Join(cacheDir, "images", "*", "image.json"))
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var img Image
		if err := json.Unmarshal(b, &img); err != nil {
			return nil, fmt.Errorf("image record %s: %w", p, err)
		}
		out = append(out, img)
	}
	return out, nil
}
