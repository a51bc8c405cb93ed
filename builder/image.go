package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/source"
)

// DefaultMirror is the Debian mirror images are made from.
const DefaultMirror = source.DefaultMirror

// DefaultImageEpoch is the SOURCE_DATE_EPOCH images are made with
// (2023-06-10, the bookworm release). It fixes file times in the rootfs.
const DefaultImageEpoch int64 = 1686355200

// imageRecipeVersion changes whenever the mmdebstrap invocation changes, so
// that an old cached image is not reused for a new recipe.
const imageRecipeVersion = "lebowski-image/1"

// BasePackages are in every build image.
var BasePackages = []string{
	"build-essential", "debhelper", "dh-strip-nondeterminism", "dpkg-dev",
	"fakeroot", "quilt", "strip-nondeterminism",
}

// Manifest says how to make a build image. Its Hash identifies the recipe
// (cache key); the image identity recorded in claims is the digest of the
// rootfs tar it produces.
type Manifest struct {
	Suite           string   `json:"suite"`
	Mirror          string   `json:"mirror"`
	Packages        []string `json:"packages"` // sorted, unique
	SourceDateEpoch int64    `json:"source_date_epoch"`
	// Name is a human label for the image tag (the source package); not
	// part of the hash, so packages with equal build deps share an image.
	Name string `json:"-"`
}

// NewManifest returns the manifest of a build image for suite with the
// base packages plus extra (normally a source package's resolved
// Build-Depends), the default mirror and epoch.
func NewManifest(suite, name string, extra []string) Manifest {
	m := Manifest{Suite: suite, Mirror: DefaultMirror, SourceDateEpoch: DefaultImageEpoch, Name: name}
	m.Packages = append(append([]string(nil), BasePackages...), extra...)
	m.normalize()
	return m
}

func (m *Manifest) normalize() {
	slices.Sort(m.Packages)
	m.Packages = slices.Compact(m.Packages)
	if m.Mirror == "" {
		m.Mirror = DefaultMirror
	}
}

// Validate checks that every field is safe to hand to mmdebstrap.
func (m Manifest) Validate() error {
	if vocab.CheckSuite(m.Suite) != nil {
		return fmt.Errorf("%w: manifest suite %q is not a suite name", ErrImage, m.Suite)
	}
	u, err := url.Parse(m.Mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(m.Mirror, " \t\n'\"") {
		return fmt.Errorf("%w: manifest mirror %q is not an http(s) URL", ErrImage, m.Mirror)
	}
	if len(m.Packages) == 0 {
		return fmt.Errorf("%w: manifest lists no packages", ErrImage)
	}
	for _, p := range m.Packages {
		if !vocab.IsPackage(p) {
			return fmt.Errorf("%w: manifest package %q is not a Debian package name", ErrImage, p)
		}
	}
	if m.SourceDateEpoch <= 0 {
		return fmt.Errorf("%w: manifest source_date_epoch %d must be positive", ErrImage, m.SourceDateEpoch)
	}
	return nil
}

// Hash is the hex sha256 of the manifest's canonical JSON (packages sorted)
// and the image recipe version.
func (m Manifest) Hash() string {
	m.Packages = append([]string(nil), m.Packages...)
	m.normalize()
	b, _ := json.Marshal(struct {
		Recipe string `json:"recipe"`
		Manifest
	}{imageRecipeVersion, m})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// mmdebstrapArgs are the arguments that build the rootfs tar at out.
func (m Manifest) mmdebstrapArgs(out string) []string {
	return []string{
		"--variant=minbase",
		"--format=tar",
		"--include=" + strings.Join(m.Packages, ","),
		"--customize-hook=rm \"$1\"/etc/resolv.conf",
		"--customize-hook=rm \"$1\"/etc/hostname",
		m.Suite, out, m.Mirror,
	}
}

// Image is a build image: made from a manifest, imported into podman.
type Image struct {
	Manifest     Manifest `json:"manifest"`
	ManifestHash string   `json:"manifest_hash"`
	// Digest is sha256:<hex> of the rootfs tar = the image's only layer
	// diff ID: the container_digest of claims.
	Digest    string   `json:"digest"`
	Ref       string   `json:"ref"` // podman reference, localhost/lebowski/…
	TarPath   string   `json:"tar_path"`
	Installed []string `json:"installed"` // "pkg (= version)", sorted
}

// imageBackend is the part of podman the image store needs.
type imageBackend interface {
	ImageExists(ctx context.Context, ref string) (bool, error)
	ImportImage(ctx context.Context, tar io.Reader, ref string) ([]string, error)
	ImageLayers(ctx context.Context, ref string) ([]string, error)
}

// ImageStore makes, caches and imports build images under
// <dataDir>/images/<manifest hash>/.
type ImageStore struct {
	dir      string
	pm       imageBackend
	log      *slog.Logger
	progress func(string)
	mu       sync.Mutex
	locks    map[string]*sync.Mutex
}

// ImageOption configures an ImageStore.
type ImageOption func(*ImageStore)

// WithImageLogger sets the logger (mmdebstrap output is logged at Info).
func WithImageLogger(l *slog.Logger) ImageOption {
	return func(s *ImageStore) {
		if l != nil {
			s.log = l
		}
	}
}

// WithImageProgress receives every mmdebstrap output line (for a progress
// display).
func WithImageProgress(f func(line string)) ImageOption {
	return func(s *ImageStore) { s.progress = f }
}

// NewImageStore returns a store keeping images under dataDir/images and
// importing them through pm.
func NewImageStore(dataDir string, pm *Podman, opts ...ImageOption) *ImageStore {
	return newImageStore(dataDir, pm, opts...)
}

func newImageStore(dataDir string, pm imageBackend, opts ...ImageOption) *ImageStore {
	s := &ImageStore{dir: filepath.Join(dataDir, "images"), pm: pm, log: slog.New(slog.DiscardHandler), locks: map[string]*sync.Mutex{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *ImageStore) lock(key string) func() {
	s.mu.Lock()
	l, ok := s.locks[key]
	if !ok {
		l = &sync.Mutex{}
		s.locks[key] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Ensure returns the image for m: from the cache if its tar and record are
// there (re-importing it if podman lost it), else made with mmdebstrap and
// imported. The imported image's layer must equal the tar's digest.
func (s *ImageStore) Ensure(ctx context.Context, m Manifest) (*Image, error) {
	m.Packages = append([]string(nil), m.Packages...)
	m.normalize()
	if err := m.Validate(); err != nil {
		return nil, err
	}
	h := m.Hash()
	defer s.lock(h)()
	dir := filepath.Join(s.dir, h)
	recPath := filepath.Join(dir, "image.json")
	img, err := readImageRecord(recPath)
	if err != nil {
		s.log.Info("making build image", "suite", m.Suite, "manifest", h[:12], "packages", len(m.Packages))
		img, err = s.make(ctx, m, dir)
		if err != nil {
			return nil, err
		}
	}
	ok, err := s.pm.ImageExists(ctx, img.Ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvironment, err)
	}
	if !ok {
		if err := s.importTar(ctx, img); err != nil {
			return nil, err
		}
	} else if layers, err := s.pm.ImageLayers(ctx, img.Ref); err != nil || len(layers) != 1 || layers[0] != img.Digest {
		// The tag points at something else: re-import ours.
		s.log.Warn("podman image does not match the cached tar; re-importing", "ref", img.Ref, "layers", layers, "want", img.Digest)
		if err := s.importTar(ctx, img); err != nil {
			return nil, err
		}
	}
	return img, nil
}

func readImageRecord(path string) (*Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, err
	}
	if _, err := os.Stat(img.TarPath); err != nil {
		return nil, err
	}
	return &img, nil
}

func (s *ImageStore) importTar(ctx context.Context, img *Image) error {
	f, err := os.Open(img.TarPath)
	if err != nil {
		return fmt.Errorf("%w: open cached rootfs: %v", ErrImage, err)
	}
	defer f.Close()
	s.log.Info("importing build image", "ref", img.Ref, "digest", img.Digest)
	layers, err := s.pm.ImportImage(ctx, f, img.Ref)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrImage, err)
	}
	if len(layers) != 1 || layers[0] != img.Digest {
		return fmt.Errorf("%w: imported image %s has layers %v, want [%s]", ErrImage, img.Ref, layers, img.Digest)
	}
	return nil
}

func (s *ImageStore) make(ctx context.Context, m Manifest, dir string) (*Image, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	tarPath := filepath.Join(dir, "rootfs.tar")
	tmp := filepath.Join(dir, "rootfs.tmp.tar")
	_ = os.RemoveAll(tmp)
	digest, err := BuildRootfs(ctx, m, tmp, s.log, s.progress)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, tarPath); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	installed, err := installedFromTar(tarPath)
	if err != nil {
		return nil, err
	}
	name := m.Name
	if name == "" {
		name = "base"
	}
	img := &Image{
		Manifest: m, ManifestHash: m.Hash(), Digest: digest, TarPath: tarPath, Installed: installed,
		Ref: fmt.Sprintf("localhost/lebowski/%s-%s:%s", m.Suite, name, strings.TrimPrefix(digest, "sha256:")[:12]),
	}
	b, _ := json.MarshalIndent(img, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "image.json.tmp"), b, 0o644); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	if err := os.Rename(filepath.Join(dir, "image.json.tmp"), filepath.Join(dir, "image.json")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	return img, nil
}

// BuildRootfs runs mmdebstrap for m with SOURCE_DATE_EPOCH set, writing the
// rootfs tar to out, and returns its digest sha256:<hex>. mmdebstrap output
// goes to log (Info) and progress. The tar's mtime is set to the epoch so
// that `podman import` gives a stable image ID too.
func BuildRootfs(ctx context.Context, m Manifest, out string, log *slog.Logger, progress func(string)) (string, error) {
	if err := m.Validate(); err != nil {
		return "", err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := exec.LookPath("mmdebstrap")
	if err != nil {
		return "", fmt.Errorf("build image: %w: mmdebstrap not found: install it with `apt-get install mmdebstrap uidmap`", ErrEnvironment)
	}
	cmd := exec.CommandContext(ctx, bin, m.mmdebstrapArgs(out)...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(m.SourceDateEpoch, 10), "LC_ALL=C.UTF-8")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var tail lastLines
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			tail.add(line)
			log.Info("mmdebstrap", "line", line)
			if progress != nil {
				progress(line)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	start := time.Now()
	err = cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		return "", fmt.Errorf("%w: mmdebstrap %s (%s) failed: %v\n%s", ErrImage, m.Suite, strings.Join(m.Packages, ","), err, tail.String())
	}
	log.Info("rootfs made", "tar", out, "took", time.Since(start).Round(time.Second))
	t := time.Unix(m.SourceDateEpoch, 0)
	if err := os.Chtimes(out, t, t); err != nil {
		return "", fmt.Errorf("%w: %v", ErrImage, err)
	}
	return fileDigest(out)
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// lastLines keeps the last 30 lines of output for error messages.
type lastLines struct{ l []string }

func (t *lastLines) add(s string) {
	t.l = append(t.l, s)
	if len(t.l) > 30 {
		t.l = t.l[1:]
	}
}
func (t *lastLines) String() string { return strings.Join(t.l, "\n") }

// maxStatusSize bounds var/lib/dpkg/status read from a tar.
const maxStatusSize = 64 << 20

// installedFromTar reads var/lib/dpkg/status from a rootfs tar and returns
// the installed packages as "pkg (= version)".
func installedFromTar(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s has no var/lib/dpkg/status", ErrImage, path)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %v", ErrImage, path, err)
		}
		if strings.TrimPrefix(strings.TrimPrefix(h.Name, "."), "/") != "var/lib/dpkg/status" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxStatusSize))
		if err != nil {
			return nil, fmt.Errorf("%w: read dpkg status: %v", ErrImage, err)
		}
		return ParseDpkgStatus(b)
	}
}

// ParseDpkgStatus parses a dpkg status file and returns the packages whose
// Status is "install ok installed" as sorted "pkg (= version)" lines
// (multi-arch qualifiers are dropped, as in .buildinfo).
func ParseDpkgStatus(b []byte) ([]string, error) {
	var out []string
	for _, para := range bytes.Split(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		var pkg, ver, status string
		for _, line := range strings.Split(string(para), "\n") {
			if line == "" || line[0] == ' ' || line[0] == '\t' {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("%w: dpkg status: malformed line %q", ErrImage, truncate(line, 80))
			}
			v = strings.TrimSpace(v)
			switch strings.ToLower(k) {
			case "package":
				pkg = v
			case "version":
				ver = v
			case "status":
				status = v
			}
		}
		if pkg == "" && ver == "" && status == "" {
			continue
		}
		if status != "install ok installed" {
			continue
		}
		if !vocab.IsPackage(pkg) || !vocab.IsVersion(ver) {
			return nil, fmt.Errorf("%w: dpkg status: bad package %q version %q", ErrImage, truncate(pkg, 80), truncate(ver, 80))
		}
		out = append(out, pkg+" (= "+ver+")")
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
