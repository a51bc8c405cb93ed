package builder

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/opinions"
)

// SourceFetcher fetches Debian inputs: a verified source package by
// version (to resolve a lock), locked files by hash, and the verified
// binary index; *source.Fetcher implements it.
type SourceFetcher interface {
	Fetch(ctx context.Context, suite, pkg, version string) (*source.Source, error)
	FetchPinnedSource(ctx context.Context, ps source.PinnedSource, snapshot string) (*source.Source, error)
	FetchPinned(ctx context.Context, p source.Pinned, snapshot string, limit int64) (path, origin string, err error)
	ResolveBinaries(ctx context.Context, suite, arch string, want []source.Installed) (*source.Resolved, error)
}

// ImageEnsurer makes build images from locks and discovers the closure a
// lock pins; *ImageStore implements it.
type ImageEnsurer interface {
	EnsureLocked(ctx context.Context, l *opinions.Lock, fetch FetchDeb) (*Image, error)
	Discover(ctx context.Context, m Manifest, fresh bool) ([]source.Installed, error)
}

// ContainerRunner runs one sandboxed container; *Podman implements it.
type ContainerRunner interface {
	Run(ctx context.Context, rs RunSpec) (RunResult, error)
}

// Defaults of a PodmanBuilder.
const (
	DefaultSuite   = "bookworm"
	DefaultArch    = "amd64"
	DefaultTimeout = 2 * time.Hour
	DefaultMemory  = 4 << 30
	DefaultPids    = 4096
)

// PodmanBuilder rebuilds source packages in podman containers. It
// implements Builder.
type PodmanBuilder struct {
	dataDir  string
	src      SourceFetcher
	images   ImageEnsurer
	run      ContainerRunner
	log      *slog.Logger
	progress func(string)
	timeout  time.Duration
	memory   int64
	pids     int64
	keepWork bool
	mirror   string // discovery mirror ("" = DefaultMirror)
}

// Option configures a PodmanBuilder.
type Option func(*PodmanBuilder)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(b *PodmanBuilder) {
		if l != nil {
			b.log = l
		}
	}
}

// WithProgress receives progress lines: image creation output and the
// build log as it grows.
func WithProgress(f func(line string)) Option { return func(b *PodmanBuilder) { b.progress = f } }

// WithTimeout bounds one build's wall-clock time (default 2h); the
// container is killed when it is exceeded.
func WithTimeout(d time.Duration) Option { return func(b *PodmanBuilder) { b.timeout = d } }

// WithMemory sets the container memory limit in bytes (default 4 GiB).
func WithMemory(n int64) Option { return func(b *PodmanBuilder) { b.memory = n } }

// WithPids sets the container pids limit (default 4096).
func WithPids(n int64) Option { return func(b *PodmanBuilder) { b.pids = n } }

// WithImages replaces the image store (tests).
func WithImages(i ImageEnsurer) Option { return func(b *PodmanBuilder) { b.images = i } }

// WithRunner replaces the container runner (tests).
func WithRunner(r ContainerRunner) Option { return func(b *PodmanBuilder) { b.run = r } }

// WithMirror sets the mirror locks are resolved from (discovery image);
// images made from locks do not depend on it.
func WithMirror(url string) Option { return func(b *PodmanBuilder) { b.mirror = url } }

// WithKeepWork keeps the work directory of each build (debugging).
func WithKeepWork(keep bool) Option { return func(b *PodmanBuilder) { b.keepWork = keep } }

// New returns a builder keeping images, work dirs and outputs under
// dataDir, fetching sources with src and running containers on pm.
func New(dataDir string, src SourceFetcher, pm *Podman, opts ...Option) (*PodmanBuilder, error) {
	if dataDir == "" || src == nil {
		return nil, fmt.Errorf("builder new: data dir and source fetcher are required")
	}
	b := &PodmanBuilder{
		dataDir: dataDir, src: src, log: slog.New(slog.DiscardHandler),
		timeout: DefaultTimeout, memory: DefaultMemory, pids: DefaultPids,
	}
	for _, o := range opts {
		o(b)
	}
	if b.run == nil {
		if pm == nil {
			return nil, fmt.Errorf("builder new: no podman connection and no runner")
		}
		b.run = pm
	}
	if b.images == nil {
		if pm == nil {
			return nil, fmt.Errorf("builder new: no podman connection and no image store")
		}
		b.images = NewImageStore(dataDir, pm, WithImageLogger(b.log), WithImageProgress(b.progress))
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "work"), 0o755); err != nil {
		return nil, fmt.Errorf("builder new: %w", err)
	}
	return b, nil
}

var _ Builder = (*PodmanBuilder)(nil)

// BuildDir returns where the outputs of one run of a recipe are kept.
func (b *PodmanBuilder) BuildDir(recipeID string) string {
	return filepath.Join(b.dataDir, "builds", recipeID)
}

func (b *PodmanBuilder) normalize(req Request) (Request, error) {
	if req.Suite == "" && req.Opinion != nil {
		req.Suite = req.Opinion.Debian.Suite
	}
	if req.Suite == "" {
		req.Suite = DefaultSuite
	}
	if req.Version == "" && req.Opinion != nil {
		req.Version = req.Opinion.Debian.Version
	}
	if req.Arch == "" {
		req.Arch = DefaultArch
	}
	switch {
	case !vocab.IsPackage(req.Package):
		return req, fmt.Errorf("%w: package %q is not a Debian source package name", ErrInvalidRequest, truncate(req.Package, 80))
	case req.Version != "" && !vocab.IsVersion(req.Version):
		return req, fmt.Errorf("%w: version %q is not a Debian version", ErrInvalidRequest, truncate(req.Version, 80))
	case vocab.CheckSuite(req.Suite) != nil:
		return req, fmt.Errorf("%w: suite %q is malformed", ErrInvalidRequest, truncate(req.Suite, 80))
	case req.Arch != DefaultArch:
		return req, fmt.Errorf("%w: arch %q: only native amd64 builds are supported", ErrInvalidRequest, truncate(req.Arch, 80))
	}
	return req, nil
}

// Build rebuilds a recipe from its lock: the request's lock, else the
// opinion's, else one resolved now from the verified mirror (a vanilla
// build, or an opinion without a lock). The source and every .deb of the
// image are fetched by hash (mirror, snapshot archive, peers) and checked
// before use; then dpkg-buildpackage -b runs in a sandboxed container
// under the opinion. A build that ran and failed is a Result with Status
// failed; errors are refusals (ErrUnsafeOpinion, ErrInvalidRequest, a lock
// for another recipe, an input no place has) and environment trouble,
// all before any container starts. When the opinion does not apply to
// the source (a patch fails) the error wraps ErrNotApplicable and the
// Result carries the log.
func (b *PodmanBuilder) Build(ctx context.Context, req Request) (*Result, error) {
	req, err := b.normalize(req)
	if err != nil {
		return nil, err
	}
	// Re-check the opinion before anything else (no container yet).
	var applied *opinionCheck
	if req.Opinion != nil && req.Version != "" {
		if applied, err = newOpinionCheck(req); err != nil {
			return nil, err
		}
	}
	lock := req.Lock
	if lock == nil && req.Opinion != nil {
		lock = req.Opinion.Lock
	}
	if lock == nil {
		if lock, err = b.Resolve(ctx, req); err != nil {
			return nil, err
		}
	}
	if err := lockFits(lock, req); err != nil {
		return nil, err
	}
	req.Version = lock.Source.Version
	if applied == nil && req.Opinion != nil {
		if applied, err = newOpinionCheck(req); err != nil {
			return nil, err
		}
	}
	src, err := b.src.FetchPinnedSource(ctx, pinnedSource(lock), lock.Snapshot())
	if err != nil {
		return nil, fmt.Errorf("build %s %s: locked source: %w", req.Package, req.Version, err)
	}
	img, err := b.images.EnsureLocked(ctx, lock, b.fetchDeb(lock))
	if err != nil {
		return nil, fmt.Errorf("build %s %s: image: %w", req.Package, req.Version, err)
	}
	res := &Result{
		Recipe: attest.Recipe{
			Source: req.Package, DebianVersion: req.Version, Suite: req.Suite, Arch: req.Arch,
			SourceSHA256: src.DscSHA256, ImageDigest: img.Digest,
		},
		BinaryVersion: req.Version,
		Installed:     img.Installed,
		Lock:          lock,
	}
	var op *appliedOpinion
	if applied != nil {
		op = applied.op
		res.Recipe.OpinionCID = op.cid
		res.BinaryVersion = op.binaryVersion
	}
	return b.runBuild(ctx, req, src, img, op, res)
}

// lockFits refuses a lock for another recipe than the request's.
func lockFits(l *opinions.Lock, req Request) error {
	var bad []string
	check := func(field, lock, want string) {
		if want != "" && lock != want {
			bad = append(bad, fmt.Sprintf("%s %q (want %q)", field, lock, want))
		}
	}
	check("package", l.Package, req.Package)
	check("suite", l.Suite, req.Suite)
	check("arch", l.Arch, req.Arch)
	check("source version", l.Source.Version, req.Version)
	opinion := ""
	if req.Opinion != nil {
		opinion = req.Opinion.Name
	}
	if l.Opinion != opinion && l.Opinion != "" {
		bad = append(bad, fmt.Sprintf("opinion %q (want %q)", l.Opinion, opinion))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: the lock is for another recipe: %s", ErrInvalidRequest, strings.Join(bad, ", "))
	}
	return nil
}

func pinnedSource(l *opinions.Lock) source.PinnedSource {
	ps := source.PinnedSource{Suite: l.Suite, Package: l.Package, Version: l.Source.Version, Directory: l.Source.Directory,
		Dsc: source.File{Name: l.Source.Dsc.Name, Size: l.Source.Dsc.Size, SHA256: l.Source.Dsc.SHA256}}
	for _, f := range l.Source.Files {
		ps.Files = append(ps.Files, source.File{Name: f.Name, Size: f.Size, SHA256: f.SHA256})
	}
	return ps
}

// fetchDeb fetches a locked .deb by hash and reports where it came from.
func (b *PodmanBuilder) fetchDeb(l *opinions.Lock) FetchDeb {
	return func(ctx context.Context, d opinions.LockDeb) (string, error) {
		p, origin, err := b.src.FetchPinned(ctx, source.Pinned{Name: path.Base(d.Filename), Path: d.Filename, Size: d.Size, SHA256: d.SHA256}, l.Snapshot(), maxDeb)
		if err != nil {
			return "", err
		}
		if origin != source.OriginCache {
			b.log.Info("fetched locked package", "package", d.Name, "version", d.Version, "from", origin)
		}
		return p, nil
	}
}

type opinionCheck struct{ op *appliedOpinion }

func newOpinionCheck(req Request) (*opinionCheck, error) {
	op, err := checkOpinion(req.Opinion, req.Package, req.Version, req.Suite)
	if err != nil {
		return nil, fmt.Errorf("build %s under opinion %q: %w", req.Package, req.Opinion.Name, err)
	}
	return &opinionCheck{op: op}, nil
}

// upstreamDirName is the fixed source tree path: /build/<pkg>-<version
// without epoch>.
func srcTreePath(pkg, version string) string {
	if i := strings.IndexByte(version, ':'); i >= 0 {
		version = version[i+1:]
	}
	return containerBuildDir + "/" + pkg + "-" + version
}

func (b *PodmanBuilder) runBuild(ctx context.Context, req Request, src *source.Source, img *Image, op *appliedOpinion, res *Result) (*Result, error) {
	work, err := os.MkdirTemp(filepath.Join(b.dataDir, "work"), req.Package+"-")
	if err != nil {
		return nil, fmt.Errorf("build %s: work dir: %w", req.Package, err)
	}
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, fmt.Errorf("build %s: work dir: %w", req.Package, err)
	}
	if !b.keepWork {
		defer os.RemoveAll(work)
	}
	if err := b.prepareWork(work, req, src, op); err != nil {
		return nil, err
	}
	b.log.Info("building", "package", req.Package, "version", res.BinaryVersion, "image", img.Ref, "recipe", res.Recipe.ID()[:12], "work", work)

	tailCtx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan struct{})
	go func() { defer close(tailDone); b.tailLog(tailCtx, filepath.Join(work, "build.log"), req.Progress) }()
	start := time.Now()
	rr, runErr := b.run.Run(ctx, RunSpec{
		Image:   img.Ref,
		Command: []string{"/bin/sh", containerScript},
		Env:     buildEnv(op),
		HostDir: work,
		MountAt: containerBuildDir,
		WorkDir: containerBuildDir,
		Memory:  b.memory,
		Pids:    b.pids,
		Timeout: b.timeout,
		Labels:  map[string]string{"org.lebowski.recipe": res.Recipe.ID(), "org.lebowski.package": req.Package},
	})
	stopTail()
	<-tailDone
	if runErr != nil {
		return nil, fmt.Errorf("build %s: %w", req.Package, runErr)
	}
	res.Log, _ = os.ReadFile(filepath.Join(work, "build.log"))
	stage := strings.TrimSpace(readSmall(filepath.Join(work, stageFile)))
	b.log.Info("build finished", "package", req.Package, "exit", rr.ExitCode, "stage", stage, "took", time.Since(start).Round(time.Millisecond))
	switch {
	case rr.TimedOut:
		res.Status, res.FailReason = attest.ResultFailed, fmt.Sprintf("build timed out after %s (stage %s); the container was killed", b.timeout, stage)
		return res, nil
	case rr.ExitCode == exitRefused:
		reason := strings.TrimSpace(readSmall(filepath.Join(work, refusedFile)))
		res.Status, res.FailReason = attest.ResultFailed, reason
		return res, fmt.Errorf("build %s: %w: %s", req.Package, ErrNotApplicable, reason)
	case rr.ExitCode != 0:
		res.Status, res.FailReason = attest.ResultFailed, fmt.Sprintf("stage %s failed with exit code %d (see the log)", stage, rr.ExitCode)
		return res, nil
	case stage != "done":
		res.Status, res.FailReason = attest.ResultFailed, fmt.Sprintf("build script stopped at stage %q with exit code 0", stage)
		return res, nil
	}
	if err := b.collect(work, img, op, res); err != nil {
		res.Status, res.FailReason = attest.ResultFailed, err.Error()
		return res, nil
	}
	res.Status = attest.ResultSuccess
	return res, nil
}

func readSmall(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	return string(b)
}

// prepareWork lays out the host work dir mounted at /build: src/ (the .dsc
// and its files), lebowski/run.sh, lebowski/patches/, lebowski/changelog.entry.
func (b *PodmanBuilder) prepareWork(work string, req Request, src *source.Source, op *appliedOpinion) error {
	if vocab.CheckFileName(src.DscName) != nil {
		return fmt.Errorf("build %s: source .dsc name %q is not a plain file name", req.Package, src.DscName)
	}
	for _, d := range []string{"src", "lebowski/patches", "out"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return fmt.Errorf("build %s: %w", req.Package, err)
		}
	}
	files := []string{src.DscName}
	for _, f := range src.Files {
		files = append(files, f.Name)
	}
	for _, name := range files {
		if vocab.CheckFileName(name) != nil {
			return fmt.Errorf("build %s: source file name %q is not a plain file name", req.Package, name)
		}
		if err := copyFile(filepath.Join(src.Dir, name), filepath.Join(work, "src", name)); err != nil {
			return fmt.Errorf("build %s: copy source: %w", req.Package, err)
		}
	}
	if op != nil {
		for _, p := range op.patches {
			if err := os.WriteFile(filepath.Join(work, "lebowski/patches", p.name), p.data, 0o644); err != nil {
				return fmt.Errorf("build %s: %w", req.Package, err)
			}
		}
		entry := ChangelogEntry(req.Package, op.binaryVersion, req.Suite, op.changelogLines(), DatePlaceholder)
		if err := os.WriteFile(filepath.Join(work, "lebowski/changelog.entry"), []byte(entry), 0o644); err != nil {
			return fmt.Errorf("build %s: %w", req.Package, err)
		}
	}
	script := buildScript(scriptParams{dscName: src.DscName, srcDir: srcTreePath(req.Package, req.Version), opinion: op, pkg: req.Package, suite: req.Suite})
	if err := os.WriteFile(filepath.Join(work, "lebowski/run.sh"), []byte(script), 0o755); err != nil {
		return fmt.Errorf("build %s: %w", req.Package, err)
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tailLog follows the build log while the container runs and sends each
// line to the logger (Debug), the builder's progress callback and the
// request's (each optional).
func (b *PodmanBuilder) tailLog(ctx context.Context, path string, progress func(string)) {
	var f *os.File
	var rd *bufio.Reader
	var partial string
	for {
		if f == nil {
			if ff, err := os.Open(path); err == nil {
				f, rd = ff, bufio.NewReader(ff)
				defer f.Close()
			}
		}
		if rd != nil {
			for {
				line, err := rd.ReadString('\n')
				partial += line
				if err != nil {
					break
				}
				l := strings.TrimRight(partial, "\n")
				b.log.Debug("build", "line", l)
				if b.progress != nil {
					b.progress(l)
				}
				if progress != nil {
					progress(l)
				}
				partial = ""
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// collect hashes the outputs, extends the .buildinfo and moves everything
// into <dataDir>/builds/<recipe id>/<run>/.
func (b *PodmanBuilder) collect(work string, img *Image, op *appliedOpinion, res *Result) error {
	outDir := filepath.Join(work, "out")
	ents, err := os.ReadDir(outDir)
	if err != nil {
		return fmt.Errorf("outputs: %w", err)
	}
	run := time.Now().UTC().Format("20060102T150405Z") + "-" + randHex(4)
	dest := filepath.Join(b.BuildDir(res.Recipe.ID()), run)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("outputs: %w", err)
	}
	var buildinfos []string
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || vocab.CheckFileName(name) != nil {
			continue
		}
		switch {
		case strings.HasSuffix(name, ".deb"), strings.HasSuffix(name, ".udeb"):
			data, err := os.ReadFile(filepath.Join(outDir, name))
			if err != nil {
				return fmt.Errorf("outputs: %w", err)
			}
			sum := sha256.Sum256(data)
			p := filepath.Join(dest, name)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return fmt.Errorf("outputs: %w", err)
			}
			res.Artifacts = append(res.Artifacts, Output{Name: name, SHA256: hex.EncodeToString(sum[:]), Path: p, Size: int64(len(data))})
		case strings.HasSuffix(name, ".buildinfo"):
			buildinfos = append(buildinfos, name)
		}
	}
	if len(res.Artifacts) == 0 {
		return errors.New("dpkg-buildpackage produced no .deb")
	}
	slices.SortFunc(res.Artifacts, func(a, b Output) int { return strings.Compare(a.Name, b.Name) })
	if len(buildinfos) != 1 {
		return fmt.Errorf("want one .buildinfo, got %d", len(buildinfos))
	}
	bi, err := os.ReadFile(filepath.Join(outDir, buildinfos[0]))
	if err != nil {
		return fmt.Errorf("outputs: %w", err)
	}
	var fields [][2]string
	if op != nil {
		fields = append(fields, [2]string{"X-Lebowski-Opinion", op.name + " " + op.cid})
	}
	fields = append(fields, [2]string{"X-Lebowski-Image", img.Digest})
	if res.Buildinfo, err = ExtendBuildinfo(bi, fields); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dest, buildinfos[0]), res.Buildinfo, 0o644); err != nil {
		return fmt.Errorf("outputs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dest, "build.log"), res.Log, 0o644); err != nil {
		return fmt.Errorf("outputs: %w", err)
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
