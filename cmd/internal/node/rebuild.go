package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/store"
)

// BuildEnv says how this node rebuilds.
type BuildEnv struct {
	Layout Layout
	// CacheDir holds verified Debian sources and build images; nodes on
	// one machine may share it (default: the data dir).
	CacheDir  string
	Mirror    string
	PodmanURL string // "" = start a private podman service
	Timeout   time.Duration
	Log       *slog.Logger
	Progress  func(line string)
	// SourceProgress reports download progress.
	SourceProgress func(name string, done, total int64)
}

// Rebuilder is a connected builder with what it holds open.
type Rebuilder struct {
	*builder.PodmanBuilder
	Images *builder.ImageStore
	Src    *source.Fetcher
	pm     *builder.Podman
}

// Close stops the private podman service, if this process started it.
func (r *Rebuilder) Close() error { return r.pm.Close() }

// OpenBuilder connects to podman (starting a service if needed) and
// returns the real builder.
func (e BuildEnv) OpenBuilder(ctx context.Context) (*Rebuilder, error) {
	log := e.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cache := e.CacheDir
	if cache == "" {
		cache = filepath.Join(e.Layout.Dir, "cache")
	}
	sopts := []source.Option{source.WithLogger(log)}
	if e.Mirror != "" {
		sopts = append(sopts, source.WithMirror(e.Mirror))
	}
	if e.SourceProgress != nil {
		sopts = append(sopts, source.WithProgress(e.SourceProgress))
	}
	src, err := source.New(filepath.Join(cache, "sources"), sopts...)
	if err != nil {
		return nil, err
	}
	pm, err := builder.Connect(ctx, e.PodmanURL, builder.WithServiceDir(e.Layout.BuildDir()), builder.WithConnectLogger(log))
	if err != nil {
		return nil, err
	}
	images := builder.NewImageStore(cache, pm, builder.WithImageLogger(log), builder.WithImageProgress(e.Progress))
	opts := []builder.Option{builder.WithLogger(log), builder.WithImages(images)}
	if e.Progress != nil {
		opts = append(opts, builder.WithProgress(e.Progress))
	}
	if e.Timeout > 0 {
		opts = append(opts, builder.WithTimeout(e.Timeout))
	}
	b, err := builder.New(e.Layout.BuildDir(), src, pm, opts...)
	if err != nil {
		pm.Close()
		return nil, err
	}
	return &Rebuilder{PodmanBuilder: b, Images: images, Src: src, pm: pm}, nil
}

// SignResult signs a build result. blobs, when set, stores the buildinfo
// and log and returns their CIDs for the statement.
func SignResult(id *attest.Identity, peerID string, op *opinions.Opinion, res *builder.Result, now time.Time, blobs func([]byte) (string, error)) (*attest.Claim, error) {
	stmt := &attest.Statement{
		Type:               attest.TypeRebuildV1,
		Package:            res.Recipe.Source,
		Version:            res.BinaryVersion,
		DebianVersion:      res.Recipe.DebianVersion,
		Suite:              res.Recipe.Suite,
		Arch:               res.Recipe.Arch,
		DebianSourceSHA256: res.Recipe.SourceSHA256,
		ContainerDigest:    res.Recipe.ImageDigest,
		RecipeID:           res.Recipe.ID(),
		Result:             res.Status,
		PeerID:             peerID,
		Timestamp:          now,
		Artifacts:          []attest.Artifact{},
	}
	if op != nil {
		stmt.Opinion = attest.OpinionRef{Name: op.Name, CID: op.CID(), Commit: op.Commit, Purity: op.Purity}
	}
	if res.Status == attest.ResultSuccess {
		for _, a := range res.Artifacts {
			stmt.Artifacts = append(stmt.Artifacts, attest.Artifact{Name: a.Name, SHA256: a.SHA256})
		}
	}
	var err error
	if blobs != nil && len(res.Buildinfo) > 0 {
		if stmt.BuildinfoCID, err = blobs(res.Buildinfo); err != nil {
			return nil, fmt.Errorf("attest: store buildinfo: %w", err)
		}
	}
	if blobs != nil && len(res.Log) > 0 {
		if stmt.LogCID, err = blobs(res.Log); err != nil {
			return nil, fmt.Errorf("attest: store log: %w", err)
		}
	}
	return attest.Sign(id, stmt)
}

// Attest stores a build's buildinfo and log as blobs, signs the claim with
// id, ingests it and marks it as this node's own. peerID may be "".
func Attest(ctx context.Context, st *store.Store, id *attest.Identity, peerID string, op *opinions.Opinion, res *builder.Result, now time.Time) (*attest.Claim, error) {
	claim, err := SignResult(id, peerID, op, res, now, st.PutBlob)
	if err != nil {
		return nil, err
	}
	// Keep the artifacts content-addressed too: their CID (raw, sha2-256)
	// follows from the sha256 in the claim, so peers can fetch them over
	// /lebowski/blob/1 knowing only the claim.
	if res.Status == attest.ResultSuccess {
		for _, a := range res.Artifacts {
			data, err := os.ReadFile(a.Path)
			if err != nil {
				return nil, fmt.Errorf("attest: read artifact %s: %w", a.Name, err)
			}
			if _, err := st.PutBlob(data); err != nil {
				return nil, fmt.Errorf("attest: store artifact %s: %w", a.Name, err)
			}
		}
	}
	if _, err := st.PutKey(id.PublicKey(), attest.TrustOwn, "own key"); err != nil {
		return nil, fmt.Errorf("attest: own key: %w", err)
	}
	r, err := st.Ingest(ctx, claim)
	if err != nil {
		return nil, err
	}
	if r[0].Err != nil {
		return nil, fmt.Errorf("attest: store own claim: %w", r[0].Err)
	}
	if err := st.MarkOwn(claim.ID); err != nil {
		return nil, err
	}
	return claim, nil
}

// PrepareImage makes (or finds) the build image of a request without
// building: verified source → Build-Depends → manifest → image.
func (r *Rebuilder) PrepareImage(ctx context.Context, req builder.Request) (*builder.Image, error) {
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
		suite = builder.DefaultSuite
	}
	src, err := r.Src.Fetch(ctx, suite, req.Package, version)
	if err != nil {
		return nil, fmt.Errorf("image %s: fetch source: %w", req.Package, err)
	}
	deps, err := builder.ResolveBuildDepends([]string{src.BuildDepends}, builder.DefaultArch)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", req.Package, err)
	}
	return r.Images.Ensure(ctx, builder.NewManifest(suite, req.Package, deps))
}

// ListImages reads the image records of a cache directory.
func ListImages(cacheDir string) ([]builder.Image, error) {
	paths, err := filepath.Glob(filepath.Join(cacheDir, "images", "*", "image.json"))
	if err != nil {
		return nil, err
	}
	var out []builder.Image
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var img builder.Image
		if err := json.Unmarshal(b, &img); err != nil {
			return nil, fmt.Errorf("image record %s: %w", p, err)
		}
		out = append(out, img)
	}
	return out, nil
}
