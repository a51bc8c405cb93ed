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
	WorkDir  string // per-run build outputs and the private podman service
	CacheDir string // verified sources and build images; nodes on one machine may share it
	Mirror   string // "" = source.DefaultMirror
	// Snapshot is a snapshot archive's base URL (fetch path 2); "" = none.
	Snapshot string
	// Peers fetches locked inputs from other nodes (fetch path 3); nil = none.
	Peers     source.Peers
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
	if e.Snapshot != "" {
		sopts = append(sopts, source.WithSnapshot(e.Snapshot))
	}
	if e.Peers != nil {
		sopts = append(sopts, source.WithPeers(e.Peers))
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
	opts := []Option{WithLogger(log), WithImages(images), WithMirror(e.Mirror)}
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
// building: from the request's or the opinion's lock, or a lock resolved
// now from the verified mirror.
func (r *Rebuilder) PrepareImage(ctx context.Context, req Request) (*Image, error) {
	lock := req.Lock
	if lock == nil && req.Opinion != nil {
		lock = req.Opinion.Lock
	}
	if lock == nil {
		var err error
		if lock, err = r.Resolve(ctx, req); err != nil {
			return nil, err
		}
	}
	return r.Images.EnsureLocked(ctx, lock, r.fetchDeb(lock))
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
