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
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/opinions"
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

// Image is a build image: made from a lock (or, for discovery, a
// manifest), imported into podman.
type Image struct {
	Manifest     Manifest `json:"manifest"`
	ManifestHash string   `json:"manifest_hash,omitempty"`
	// LockKey is the lock's ImageKey: the cache key of images made from
	// locks.
	LockKey string `json:"lock_key,omitempty"`
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

// EnsureLocked returns the image of a lock: from the cache (keyed by the
// lock's image part) if its tar and record are there, re-importing it if
// podman lost it; else made from exactly the locked .debs, which fetch
// provides (checked against the lock's sha256 before use), and imported.
// The imported image's layer must equal the tar's digest.
func (s *ImageStore) EnsureLocked(ctx context.Context, l *opinions.Lock, fetch FetchDeb) (*Image, error) {
	key := l.ImageKey()
	defer s.lock(key)()
	dir := filepath.Join(s.dir, key)
	img, err := readImageRecord(filepath.Join(dir, "image.json"))
	if err != nil {
		s.log.Info("making build image from lock", "suite", l.Suite, "key", key, "packages", len(l.Image))
		if img, err = s.makeLocked(ctx, l, fetch, dir); err != nil {
			return nil, err
		}
	}
	if err := s.ready(ctx, img); err != nil {
		return nil, err
	}
	return img, nil
}

// ready makes sure podman holds img under its reference with the right
// layer, importing the cached tar when it does not.
func (s *ImageStore) ready(ctx context.Context, img *Image) error {
	ok, err := s.pm.ImageExists(ctx, img.Ref)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrEnvironment, err)
	}
	if !ok {
		return s.importTar(ctx, img)
	}
	if layers, err := s.pm.ImageLayers(ctx, img.Ref); err != nil || len(layers) != 1 || layers[0] != img.Digest {
		// The tag points at something else: re-import ours.
		s.log.Warn("podman image does not match the cached tar; re-importing", "ref", img.Ref, "layers", layers, "want", img.Digest)
		return s.importTar(ctx, img)
	}
	return nil
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

// FetchDeb returns the path of a locked .deb whose bytes were checked
// against the lock (source.Fetcher.FetchPinned behind it).
type FetchDeb func(ctx context.Context, d opinions.LockDeb) (string, error)

// maxDeb bounds one .deb of a lock.
const maxDeb = 1 << 30

// makeLocked makes the image of a lock: every locked .deb fetched by hash
// into a flat repository (dpkg-scanpackages, a Release naming the suite),
// mmdebstrap'ed from it with every package included, so apt has nothing
// else to choose from. The rootfs must not depend on where the .debs came
// from: apt's lists and caches are cleaned by mmdebstrap, and
// /etc/apt/sources.list is written as the mirror line every node writes.
func (s *ImageStore) makeLocked(ctx context.Context, l *opinions.Lock, fetch FetchDeb, dir string) (*Image, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	repo, err := os.MkdirTemp(s.dir, ".repo-")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	defer os.RemoveAll(repo)
	for i, d := range l.Image {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := fetch(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("image: locked package %s %s (%s): %w", d.Name, d.Version, d.Filename, err)
		}
		if err := linkOrCopy(p, filepath.Join(repo, path.Base(d.Filename))); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrImage, err)
		}
		if s.progress != nil {
			s.progress(fmt.Sprintf("package %d/%d %s", i+1, len(l.Image), d.Name))
		}
	}
	if err := writeFlatRepo(ctx, repo, l); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	tarPath := filepath.Join(dir, "rootfs.tar")
	tmp := filepath.Join(dir, "rootfs.tmp.tar")
	_ = os.RemoveAll(tmp)
	digest, err := runMmdebstrap(ctx, lockedArgs(l, repo, tmp), l.ImageEpoch, s.log, s.progress, l.Suite+" (locked, "+strconv.Itoa(len(l.Image))+" packages)")
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	inst, err := installedFromTar(tmp)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	if err := sameAsLock(inst, l); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, tarPath); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	img := &Image{
		Manifest: Manifest{Suite: l.Suite, Packages: l.Packages(), SourceDateEpoch: l.ImageEpoch, Name: l.Package},
		LockKey:  l.ImageKey(), Digest: digest, TarPath: tarPath, Installed: installedLines(inst),
		Ref: fmt.Sprintf("localhost/lebowski/%s-%s:%s", l.Suite, l.Package, strings.TrimPrefix(digest, "sha256:")[:12]),
	}
	if err := writeJSONAtomic(filepath.Join(dir, "image.json"), img); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	return img, nil
}

// sameAsLock checks that the image holds exactly the locked packages.
func sameAsLock(inst []source.Installed, l *opinions.Lock) error {
	want := map[string]opinions.LockDeb{}
	for _, d := range l.Image {
		want[d.Name] = d
	}
	var diff []string
	for _, p := range inst {
		d, ok := want[p.Name]
		switch {
		case !ok:
			diff = append(diff, "extra "+p.Name+" "+p.Version)
		case d.Version != p.Version || (p.Arch != "" && d.Arch != p.Arch):
			diff = append(diff, fmt.Sprintf("%s is %s (%s), lock says %s (%s)", p.Name, p.Version, p.Arch, d.Version, d.Arch))
		}
		delete(want, p.Name)
	}
	for n := range want {
		diff = append(diff, "missing "+n)
	}
	if len(diff) > 0 {
		slices.Sort(diff)
		return fmt.Errorf("%w: the image made from the lock does not hold exactly the locked packages: %s", ErrImage, strings.Join(diff, "; "))
	}
	return nil
}

// writeFlatRepo writes Packages (dpkg-scanpackages) and a Release naming
// the lock's suite (mmdebstrap selects essential and required packages of
// that suite) into repo.
func writeFlatRepo(ctx context.Context, repo string, l *opinions.Lock) error {
	bin, err := exec.LookPath("dpkg-scanpackages")
	if err != nil {
		return fmt.Errorf("%w: dpkg-scanpackages not found: install it with `apt-get install dpkg-dev`", ErrEnvironment)
	}
	cmd := exec.CommandContext(ctx, bin, "-m", ".")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pk, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%w: dpkg-scanpackages: %v: %s", ErrImage, err, truncate(stderr.String(), 400))
	}
	if err := os.WriteFile(filepath.Join(repo, "Packages"), pk, 0o644); err != nil {
		return fmt.Errorf("%w: %v", ErrImage, err)
	}
	sum := sha256.Sum256(pk)
	rel := fmt.Sprintf("Origin: Lebowski\nLabel: Lebowski lock\nSuite: %s\nCodename: %s\nArchitectures: %s all\nDate: %s\nSHA256:\n %s %d Packages\n",
		l.Suite, l.Suite, l.Arch, time.Unix(l.ImageEpoch, 0).UTC().Format(time.RFC1123), hex.EncodeToString(sum[:]), len(pk))
	if err := os.WriteFile(filepath.Join(repo, "Release"), []byte(rel), 0o644); err != nil {
		return fmt.Errorf("%w: %v", ErrImage, err)
	}
	return nil
}

// lockedArgs are mmdebstrap's arguments for a lock's image: minbase with
// every locked package included, from the flat repository at repo.
func lockedArgs(l *opinions.Lock, repo, out string) []string {
	return []string{
		"--variant=minbase",
		"--format=tar",
		"--include=" + strings.Join(l.Packages(), ","),
		"--customize-hook=rm \"$1\"/etc/resolv.conf",
		"--customize-hook=rm \"$1\"/etc/hostname",
		"--customize-hook=echo 'deb " + DefaultMirror + " " + l.Suite + " main' > \"$1\"/etc/apt/sources.list",
		l.Suite, out, "deb [trusted=yes] copy://" + repo + " ./",
	}
}

// Discover makes the rootfs of a manifest from the live mirror only to
// read which packages it holds: the closure a lock pins. The tar is
// thrown away; the answer is cached by manifest hash unless fresh.
func (s *ImageStore) Discover(ctx context.Context, m Manifest, fresh bool) ([]source.Installed, error) {
	m.Packages = append([]string(nil), m.Packages...)
	m.normalize()
	if err := m.Validate(); err != nil {
		return nil, err
	}
	h := m.Hash()
	defer s.lock("discover/" + h)()
	cache := filepath.Join(s.dir, "discover", h+".json")
	if !fresh {
		var inst []source.Installed
		if b, err := os.ReadFile(cache); err == nil && json.Unmarshal(b, &inst) == nil && len(inst) > 0 {
			return inst, nil
		}
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	tmp, err := os.MkdirTemp(s.dir, ".discover-")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	defer os.RemoveAll(tmp)
	s.log.Info("resolving the image closure from the mirror", "suite", m.Suite, "mirror", m.Mirror, "packages", len(m.Packages))
	out := filepath.Join(tmp, "rootfs.tar")
	if _, err := BuildRootfs(ctx, m, out, s.log, s.progress); err != nil {
		return nil, err
	}
	inst, err := installedFromTar(out)
	if err != nil {
		return nil, err
	}
	if err := writeJSONAtomic(cache, inst); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImage, err)
	}
	return inst, nil
}

func writeJSONAtomic(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// linkOrCopy hard-links src to dst, or copies it across filesystems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst)
}

// BuildRootfs runs mmdebstrap for m with SOURCE_DATE_EPOCH set, writing the
// rootfs tar to out, and returns its digest sha256:<hex>. mmdebstrap output
// goes to log (Info) and progress.
func BuildRootfs(ctx context.Context, m Manifest, out string, log *slog.Logger, progress func(string)) (string, error) {
	if err := m.Validate(); err != nil {
		return "", err
	}
	return runMmdebstrap(ctx, m.mmdebstrapArgs(out), m.SourceDateEpoch, log, progress, m.Suite+" ("+strings.Join(m.Packages, ",")+")")
}

// runMmdebstrap runs mmdebstrap with args (the tar path is the second to
// last but one argument's business) and returns the digest of the tar it
// wrote (the last path argument). The tar's mtime is set to the epoch so
// that `podman import` gives a stable image ID too.
func runMmdebstrap(ctx context.Context, args []string, epoch int64, log *slog.Logger, progress func(string), what string) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := exec.LookPath("mmdebstrap")
	if err != nil {
		return "", fmt.Errorf("build image: %w: mmdebstrap not found: install it with `apt-get install mmdebstrap uidmap`", ErrEnvironment)
	}
	out := args[len(args)-2]
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10), "LC_ALL=C.UTF-8")
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
		return "", fmt.Errorf("%w: mmdebstrap %s failed: %v\n%s", ErrImage, what, err, tail.String())
	}
	log.Info("rootfs made", "tar", out, "took", time.Since(start).Round(time.Second))
	t := time.Unix(epoch, 0)
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
// the installed packages.
func installedFromTar(path string) ([]source.Installed, error) {
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
		return parseDpkgStatus(b)
	}
}

// ParseDpkgStatus parses a dpkg status file and returns the packages whose
// Status is "install ok installed" as sorted "pkg (= version)" lines
// (multi-arch qualifiers are dropped, as in .buildinfo).
func ParseDpkgStatus(b []byte) ([]string, error) {
	inst, err := parseDpkgStatus(b)
	if err != nil {
		return nil, err
	}
	return installedLines(inst), nil
}

// installedLines formats packages as sorted "pkg (= version)" lines.
func installedLines(inst []source.Installed) []string {
	out := make([]string, 0, len(inst))
	for _, p := range inst {
		out = append(out, p.Name+" (= "+p.Version+")")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// parseDpkgStatus returns the installed packages of a dpkg status file,
// sorted by name.
func parseDpkgStatus(b []byte) ([]source.Installed, error) {
	var out []source.Installed
	for _, para := range bytes.Split(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		var pkg, ver, arch, status string
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
			case "architecture":
				arch = v
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
		if !vocab.IsPackage(pkg) || !vocab.IsVersion(ver) || (arch != "" && vocab.CheckArch(arch) != nil) {
			return nil, fmt.Errorf("%w: dpkg status: bad package %q version %q arch %q", ErrImage, truncate(pkg, 80), truncate(ver, 80), truncate(arch, 40))
		}
		out = append(out, source.Installed{Name: pkg, Version: ver, Arch: arch})
	}
	slices.SortFunc(out, func(a, b source.Installed) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
