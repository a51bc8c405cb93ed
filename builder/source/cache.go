package source

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Cache layout (see docs/SOURCE.md):
//
//	<cache>/blobs/sha256/<hex>                       every verified file, read-only
//	<cache>/index/<mirror>/<suite>/release.json      last verified InRelease (by sha256) + fetch time
//	<cache>/index/<mirror>/<suite>/<pkg>/<ver>.json  a fetched package: .dsc and file hashes
//	<cache>/src/<pkg>_<ver>_<dsc12>/                 Dir: .dsc + files, hard links to blobs
//	<cache>/tmp/                                     partial downloads

// indexEntry records a package whose chain was verified.
type indexEntry struct {
	Mirror    string    `json:"mirror"`
	Suite     string    `json:"suite"`
	Package   string    `json:"package"`
	Version   string    `json:"version"`
	Directory string    `json:"directory"`
	Dsc       File      `json:"dsc"`
	Files     []File    `json:"files"`
	Signer    string    `json:"inrelease_signer"`
	FetchedAt time.Time `json:"fetched_at"`
}

func (f *Fetcher) indexPath(suite, pkg, ver string) string {
	return filepath.Join(f.dir, "index", f.mirrorID, suite, pkg, escapeVersion(ver)+".json")
}

func (f *Fetcher) writeIndex(ie *indexEntry) error {
	b, err := json.MarshalIndent(ie, "", "  ")
	if err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(f.dir, "tmp"), f.indexPath(ie.Suite, ie.Package, ie.Version), b, 0o644); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	return nil
}

// fromIndex answers from the cache without any network access. Every blob
// is re-hashed and the .dsc re-parsed and cross-checked against the
// recorded hashes; anything amiss is logged and reported as a miss, so the
// caller falls back to the full chain.
func (f *Fetcher) fromIndex(suite, pkg, ver string) (*Source, bool) {
	unlock := f.lock("pkg/" + suite + "/" + pkg + "/" + ver)
	defer unlock()
	src, err := f.readIndexed(suite, pkg, ver)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.log.Warn("cache entry unusable, fetching again", "suite", suite, "package", pkg, "version", ver, "err", err)
		}
		return nil, false
	}
	f.log.Debug("cache hit", "suite", suite, "package", pkg, "version", ver)
	return src, true
}

func (f *Fetcher) readIndexed(suite, pkg, ver string) (*Source, error) {
	b, err := os.ReadFile(f.indexPath(suite, pkg, ver))
	if err != nil {
		return nil, err
	}
	var ie indexEntry
	if err := json.Unmarshal(b, &ie); err != nil {
		return nil, fmt.Errorf("index entry: %w", err)
	}
	if ie.Suite != suite || ie.Package != pkg || ie.Version != ver || !isSHA256Hex(ie.Dsc.SHA256) || !validFileName(ie.Dsc.Name) {
		return nil, fmt.Errorf("index entry does not match %s/%s %s", suite, pkg, ver)
	}
	dscPath, err := f.cachedBlob(ie.Dsc.Name, checksum{SHA256: ie.Dsc.SHA256, Size: ie.Dsc.Size, Name: ie.Dsc.Name})
	if err != nil {
		return nil, err
	}
	d, err := readDsc(dscPath)
	if err != nil {
		return nil, err
	}
	// Re-run the .dsc/Sources cross-check against the recorded hashes.
	rec := &sourcesEntry{Package: ie.Package, Version: ie.Version,
		Files: []checksum{{SHA256: ie.Dsc.SHA256, Size: ie.Dsc.Size, Name: ie.Dsc.Name}}}
	for _, fl := range ie.Files {
		rec.Files = append(rec.Files, checksum{SHA256: fl.SHA256, Size: fl.Size, Name: fl.Name})
	}
	if err := crossCheck(d, rec); err != nil {
		return nil, err
	}
	var files []File
	for _, c := range d.Files {
		p, err := f.cachedBlob(c.Name, c)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: c.Name, Path: p, SHA256: c.SHA256, Size: c.Size})
	}
	return f.assemble(&ie, d, dscPath, files)
}

// linkDir makes <cache>/src/<pkg>_<ver>_<dsc12>/ hold the .dsc and its
// files. An existing directory is kept when every entry is the expected
// blob (same inode) and nothing else is there; otherwise it is rebuilt
// in a temporary directory and swapped in.
func (f *Fetcher) linkDir(ie *indexEntry, dscPath string, files []File) (string, error) {
	want := map[string]string{ie.Dsc.Name: dscPath}
	for _, fl := range files {
		want[fl.Name] = fl.Path
	}
	dir := filepath.Join(f.dir, "src", fmt.Sprintf("%s_%s_%s", ie.Package, escapeVersion(ie.Version), ie.Dsc.SHA256[:12]))
	if dirMatches(dir, want) {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(f.dir, "tmp"), "src-*")
	if err != nil {
		return "", fmt.Errorf("prepare source dir: %w", err)
	}
	defer os.RemoveAll(tmp) // no-op after the rename
	for name, blob := range want {
		if err := linkOrCopy(blob, filepath.Join(tmp, name)); err != nil {
			return "", fmt.Errorf("prepare source dir: %w", err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("prepare source dir: %w", err)
	}
	old := dir + ".old-" + filepath.Base(tmp)
	if _, err := os.Stat(dir); err == nil {
		if err := os.Rename(dir, old); err != nil {
			return "", fmt.Errorf("prepare source dir: %w", err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if dirMatches(dir, want) { // another process won the race
			return dir, nil
		}
		return "", fmt.Errorf("prepare source dir: %w", err)
	}
	return dir, nil
}

func dirMatches(dir string, want map[string]string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != len(want) {
		return false
	}
	for _, e := range ents {
		blob, ok := want[e.Name()]
		if !ok {
			return false
		}
		a, err1 := os.Lstat(filepath.Join(dir, e.Name()))
		b, err2 := os.Stat(blob)
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			return false
		}
	}
	return true
}

// linkOrCopy hard-links src to dst, copying when linking is not possible
// (another filesystem, no permission).
func linkOrCopy(src, dst string) (err error) {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	defer closeAll(&err, out)
	_, err = io.Copy(out, in)
	return err
}

// mirrorID turns a mirror URL into a directory name: readable, and unique
// enough (the scheme is dropped: content is authenticated either way).
func mirrorID(mirror string) string {
	s := mirror
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// escapeVersion makes a Debian version safe as a file name everywhere
// (the epoch colon).
func escapeVersion(v string) string { return strings.ReplaceAll(v, ":", "%3a") }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
