// Package source fetches Debian source packages with the full verification
// chain (DESIGN §3.1): the suite's InRelease is checked against Debian's
// archive keyring, Sources is checked against the sha256 in InRelease, the
// .dsc and every file it lists are checked against the sha256 in Sources,
// and the .dsc's own checksums must agree with Sources. Everything is
// cached by sha256, so a second Fetch of the same package downloads
// nothing. See docs/SOURCE.md.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// DefaultMirror is the Debian mirror used when WithMirror is not given.
const DefaultMirror = "http://deb.debian.org/debian"

// DefaultReleaseMaxAge is how long a verified InRelease is reused before
// it is fetched again (WithReleaseMaxAge).
const DefaultReleaseMaxAge = 30 * time.Minute

const userAgent = "lebowski-source/1"

// Source is one verified Debian source package in the cache.
type Source struct {
	Package, Version, Suite string
	// DscPath is the verified .dsc in the blob store.
	DscPath string
	// DscSHA256 is the hex sha256 of the .dsc: the recipe's
	// debian_source_sha256.
	DscSHA256 string
	DscName   string // e.g. hello_2.10-3.dsc
	DscSize   int64
	// Directory is the package's pool directory, e.g. pool/main/h/hello.
	Directory string
	// Files lists the files named by the .dsc (orig and debian tarballs,
	// signatures…), not the .dsc itself.
	Files []File
	// Dir holds the .dsc and its files side by side (hard links into the
	// cache, or copies), ready for `dpkg-source -x <Dir>/<DscName> <out>`.
	// It is shared: treat it as read-only and always extract elsewhere.
	Dir string
	// BuildDepends joins the .dsc's Build-Depends, Build-Depends-Arch and
	// Build-Depends-Indep (what `dpkg-buildpackage -b` needs), raw relation
	// syntax, line breaks folded. BuildConflicts likewise.
	BuildDepends   string
	BuildConflicts string
	Format         string // e.g. "3.0 (quilt)"
	Architecture   string // the .dsc's Architecture field, e.g. "any"
	// Signer is the fingerprint of the key whose InRelease signature
	// authenticated this package (when it was first fetched).
	Signer string
}

// File is one file of a source package.
type File struct {
	Name   string `json:"name"`
	Path   string `json:"path,omitempty"` // in the blob store
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Fetcher downloads and verifies source packages. It is safe for
// concurrent use; several processes may share one cache directory.
type Fetcher struct {
	dir           string
	mirror        string
	mirrorID      string
	keyringPaths  []string
	keyring       openpgp.EntityList
	client        *http.Client
	log           *slog.Logger
	progress      func(name string, done, total int64)
	now           func() time.Time
	releaseMaxAge time.Duration
	offline       bool
	snapshot      string // base URL of a snapshot archive ("" = none)
	peers         Peers  // nil = no peers

	locks sync.Map // key → *sync.Mutex, serialises work on one suite / package
}

// Option configures a Fetcher.
type Option func(*Fetcher) error

// WithMirror sets the Debian mirror base URL (the directory holding dists/
// and pool/).
func WithMirror(url string) Option {
	return func(f *Fetcher) error {
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			return fmt.Errorf("mirror %q: want an http:// or https:// URL", url)
		}
		f.mirror = strings.TrimRight(url, "/")
		return nil
	}
}

// WithKeyring replaces the default keyrings (DefaultKeyrings) with the
// given OpenPGP keyring files (binary or armored). All keys are loaded.
func WithKeyring(paths ...string) Option {
	return func(f *Fetcher) error {
		if len(paths) == 0 {
			return errors.New("WithKeyring: no paths")
		}
		f.keyringPaths = paths
		return nil
	}
}

// WithHTTPClient sets the HTTP client.
func WithHTTPClient(c *http.Client) Option {
	return func(f *Fetcher) error {
		if c == nil {
			return errors.New("WithHTTPClient: nil client")
		}
		f.client = c
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(f *Fetcher) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		f.log = l
		return nil
	}
}

// WithProgress sets a callback called during downloads (about every MiB
// and at the end). total is the expected size.
func WithProgress(fn func(name string, done, total int64)) Option {
	return func(f *Fetcher) error { f.progress = fn; return nil }
}

// WithNow sets the clock used for signature, expiry and cache-age checks.
func WithNow(now func() time.Time) Option {
	return func(f *Fetcher) error {
		if now == nil {
			return errors.New("WithNow: nil clock")
		}
		f.now = now
		return nil
	}
}

// WithReleaseMaxAge sets how long a cached, verified InRelease is reused
// without asking the mirror again (default DefaultReleaseMaxAge). Zero
// means always re-fetch InRelease when it is needed.
func WithReleaseMaxAge(d time.Duration) Option {
	return func(f *Fetcher) error {
		if d < 0 {
			return fmt.Errorf("WithReleaseMaxAge: negative duration %s", d)
		}
		f.releaseMaxAge = d
		return nil
	}
}

// WithOffline forbids all network access: Fetch answers from the cache
// (a cached InRelease is used whatever its age, as long as its signature
// still verifies and its Valid-Until has not passed) or fails with
// ErrNotCached.
func WithOffline(offline bool) Option {
	return func(f *Fetcher) error { f.offline = offline; return nil }
}

// New returns a Fetcher caching in cacheDir (created if missing).
func New(cacheDir string, opts ...Option) (*Fetcher, error) {
	if cacheDir == "" {
		return nil, errors.New("source: new: empty cache directory")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	f := &Fetcher{
		dir:           cacheDir,
		mirror:        DefaultMirror,
		client:        &http.Client{Transport: tr},
		log:           slog.New(slog.DiscardHandler),
		now:           time.Now,
		releaseMaxAge: DefaultReleaseMaxAge,
	}
	for _, o := range opts {
		if err := o(f); err != nil {
			return nil, fmt.Errorf("source: new: %w", err)
		}
	}
	if f.keyringPaths == nil {
		f.keyringPaths = DefaultKeyrings()
	}
	kr, err := loadKeyring(f.keyringPaths)
	if err != nil {
		return nil, fmt.Errorf("source: new: %w", err)
	}
	f.keyring = kr
	f.mirrorID = mirrorID(f.mirror)
	for _, d := range []string{"blobs/sha256", "tmp", "index", "src"} {
		if err := os.MkdirAll(filepath.Join(cacheDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("source: new: %w", err)
		}
	}
	return f, nil
}

// Fetch returns the verified source package pkg at version in suite,
// downloading what is not cached. version "" means the suite's current
// version (the highest in Sources).
//
// With an explicit version and a warm cache, Fetch makes no HTTP requests
// at all: the package was authenticated when first fetched and a Debian
// version's content never changes. With version "", Fetch needs the
// suite's current Sources: it reuses a verified InRelease younger than
// WithReleaseMaxAge, otherwise it fetches InRelease again (one request; the
// Sources file is only downloaded again if its hash changed).
func (f *Fetcher) Fetch(ctx context.Context, suite, pkg, ver string) (*Source, error) {
	if err := checkArgs(suite, pkg, ver); err != nil {
		return nil, fmt.Errorf("source: fetch: %w", err)
	}
	if ver != "" {
		if src, ok := f.fromIndex(suite, pkg, ver); ok {
			return src, nil
		}
	}
	rel, err := f.release(ctx, suite)
	if err != nil {
		return nil, fmt.Errorf("source: fetch %s/%s: %w", suite, pkg, err)
	}
	entries, err := f.scanSources(ctx, suite, rel, pkg)
	if err != nil {
		return nil, fmt.Errorf("source: fetch %s/%s: %w", suite, pkg, err)
	}
	entry, err := pickEntry(entries, suite, pkg, ver)
	if err != nil {
		return nil, fmt.Errorf("source: fetch: %w", err)
	}
	if ver == "" {
		if src, ok := f.fromIndex(suite, pkg, entry.Version); ok {
			return src, nil
		}
	}
	src, err := f.downloadSource(ctx, suite, entry, rel.Signer)
	if err != nil {
		return nil, fmt.Errorf("source: fetch %s/%s %s: %w", suite, pkg, entry.Version, err)
	}
	return src, nil
}

// Versions lists the versions of pkg in the suite's current Sources,
// highest first.
func (f *Fetcher) Versions(ctx context.Context, suite, pkg string) ([]string, error) {
	if err := checkArgs(suite, pkg, ""); err != nil {
		return nil, fmt.Errorf("source: versions: %w", err)
	}
	rel, err := f.release(ctx, suite)
	if err != nil {
		return nil, fmt.Errorf("source: versions %s/%s: %w", suite, pkg, err)
	}
	entries, err := f.scanSources(ctx, suite, rel, pkg)
	if err != nil {
		return nil, fmt.Errorf("source: versions %s/%s: %w", suite, pkg, err)
	}
	return versionsOf(entries), nil
}

func checkArgs(suite, pkg, ver string) error {
	if !validSuite(suite) {
		return fmt.Errorf("bad suite name %q", truncate(suite, 80))
	}
	if !validPackageName(pkg) {
		return fmt.Errorf("bad source package name %q", truncate(pkg, 80))
	}
	if ver != "" {
		if err := validVersion(ver); err != nil {
			return err
		}
	}
	return nil
}

// downloadSource fetches and checks the .dsc and its files for entry, records
// the index entry and builds the Dir.
func (f *Fetcher) downloadSource(ctx context.Context, suite string, entry *sourcesEntry, signer string) (*Source, error) {
	unlock := f.lock("pkg/" + suite + "/" + entry.Package + "/" + entry.Version)
	defer unlock()

	dscSum, _ := entry.dscFile() // checked by parseSourcesEntry
	base := f.mirror + "/" + entry.Directory + "/"
	dscPath, err := f.fetchBlob(ctx, dscSum.Name, base+dscSum.Name, dscSum, maxDscSize)
	if err != nil {
		return nil, err
	}
	d, err := readDsc(dscPath)
	if err != nil {
		return nil, err
	}
	if err := crossCheck(d, entry); err != nil {
		return nil, err
	}
	var files []File
	for _, c := range d.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := f.fetchBlob(ctx, c.Name, base+c.Name, c, maxSourceFile)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: c.Name, Path: p, SHA256: c.SHA256, Size: c.Size})
	}
	ie := &indexEntry{
		Mirror: f.mirror, Suite: suite, Package: entry.Package, Version: entry.Version,
		Directory: entry.Directory,
		Dsc:       File{Name: dscSum.Name, SHA256: dscSum.SHA256, Size: dscSum.Size},
		Signer:    signer, FetchedAt: f.now().UTC(),
	}
	for _, fl := range files {
		ie.Files = append(ie.Files, File{Name: fl.Name, SHA256: fl.SHA256, Size: fl.Size})
	}
	if err := f.writeIndex(ie); err != nil {
		return nil, err
	}
	return f.assemble(ie, d, dscPath, files)
}

// assemble builds the Source and its Dir.
func (f *Fetcher) assemble(ie *indexEntry, d *dsc, dscPath string, files []File) (*Source, error) {
	dir, err := f.linkDir(ie, dscPath, files)
	if err != nil {
		return nil, err
	}
	return &Source{
		Package: ie.Package, Version: ie.Version, Suite: ie.Suite,
		DscPath: dscPath, DscSHA256: ie.Dsc.SHA256, DscName: ie.Dsc.Name, DscSize: ie.Dsc.Size, Directory: ie.Directory,
		Files: files, Dir: dir,
		BuildDepends: d.BuildDepends, BuildConflicts: d.BuildConflicts,
		Format: d.Format, Architecture: d.Architecture,
		Signer: ie.Signer,
	}, nil
}

func readDsc(p string) (*dsc, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read .dsc: %w", err)
	}
	return parseDsc(b)
}

// crossCheck makes sure the .dsc describes the same package and exactly
// the same files as the authenticated Sources entry.
func crossCheck(d *dsc, e *sourcesEntry) error {
	if d.Source != e.Package || d.Version != e.Version {
		return fmt.Errorf("%w: .dsc is %s %s but Sources says %s %s", ErrMalformed, d.Source, d.Version, e.Package, e.Version)
	}
	dscSum, _ := e.dscFile()
	want := map[string]checksum{}
	for _, c := range e.Files {
		if c.Name != dscSum.Name {
			want[c.Name] = c
		}
	}
	if len(d.Files) != len(want) {
		return fmt.Errorf("%w: .dsc lists %d files but Sources lists %d (besides the .dsc)", ErrMalformed, len(d.Files), len(want))
	}
	for _, c := range d.Files {
		w, ok := want[c.Name]
		if !ok {
			return fmt.Errorf("%w: .dsc lists %s which Sources does not", ErrMalformed, c.Name)
		}
		if w.SHA256 != c.SHA256 || w.Size != c.Size {
			return fmt.Errorf("%w: %s: .dsc says sha256 %s size %d, Sources says %s size %d", ErrMalformed, c.Name, c.SHA256, c.Size, w.SHA256, w.Size)
		}
		delete(want, c.Name)
	}
	return nil
}

func (f *Fetcher) lock(key string) (unlock func()) {
	m, _ := f.locks.LoadOrStore(key, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// closeAll closes rc, keeping the first error.
func closeAll(err *error, c io.Closer) {
	if cerr := c.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}
