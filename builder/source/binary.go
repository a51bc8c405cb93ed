package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// BinaryPackage is one entry of a suite's verified Packages index.
type BinaryPackage struct {
	Name     string
	Version  string
	Arch     string
	Filename string // pool path
	Size     int64
	SHA256   string
}

// Installed names a binary package by name, version and architecture, as
// dpkg's status file records it.
type Installed struct {
	Name, Version, Arch string
}

// Resolved is what ResolveBinaries found: the packages, and the date of the
// verified InRelease they came from (the archive state a lock pins).
type Resolved struct {
	Packages   []BinaryPackage // in the order asked
	MirrorDate time.Time
}

// MissingBinariesError lists packages the index does not have (at that
// version): the mirror moved on since the image was made.
type MissingBinariesError struct {
	Suite   string
	Missing []Installed
}

func (e *MissingBinariesError) Error() string {
	var s []string
	for _, m := range e.Missing {
		s = append(s, m.Name+" "+m.Version+" ("+m.Arch+")")
	}
	return fmt.Sprintf("source: %d packages are not in %s's Packages index: %s", len(e.Missing), e.Suite, strings.Join(s, ", "))
}

func (e *MissingBinariesError) Unwrap() error { return ErrNotFound }

// binaryIndexes in order of preference, relative to dists/<suite>/.
func binaryIndexes(arch string) []sourcesIndex {
	base := "main/binary-" + arch + "/Packages"
	return []sourcesIndex{
		{base + ".xz", func(r io.Reader) (io.Reader, error) { return xz.NewReader(r) }},
		{base + ".gz", func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{base, func(r io.Reader) (io.Reader, error) { return r, nil }},
	}
}

// ResolveBinaries looks the wanted packages up in the suite's Packages
// index for arch (verified: InRelease signature → Release sha256 → index)
// and returns their pool path, size and sha256: the image part of a lock.
// A package the index lacks is reported in a *MissingBinariesError.
func (f *Fetcher) ResolveBinaries(ctx context.Context, suite, arch string, want []Installed) (*Resolved, error) {
	if !validSuite(suite) || vocab.CheckArch(arch) != nil {
		return nil, fmt.Errorf("source: resolve binaries: bad suite %q or arch %q", suite, arch)
	}
	rel, err := f.release(ctx, suite)
	if err != nil {
		return nil, fmt.Errorf("source: resolve binaries in %s: %w", suite, err)
	}
	r, name, done, err := f.openIndex(ctx, suite, rel, binaryIndexes(arch))
	if err != nil {
		return nil, fmt.Errorf("source: resolve binaries: %w", err)
	}
	defer done()
	found, err := findBinaries(ctx, r, want)
	if err != nil {
		return nil, fmt.Errorf("source: read %s: %w", name, err)
	}
	out := &Resolved{MirrorDate: rel.Date}
	var missing []Installed
	for _, w := range want {
		b, ok := found[w]
		if !ok {
			missing = append(missing, w)
			continue
		}
		out.Packages = append(out.Packages, b)
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i].Name < missing[j].Name })
		return nil, &MissingBinariesError{Suite: suite, Missing: missing}
	}
	return out, nil
}

// findBinaries scans Packages paragraphs and keeps the wanted ones. Only
// paragraphs whose Package line names a wanted package are parsed.
func findBinaries(ctx context.Context, r io.Reader, want []Installed) (map[Installed]BinaryPackage, error) {
	names := map[string]bool{}
	wanted := map[Installed]bool{}
	for _, w := range want {
		names[w.Name] = true
		wanted[w] = true
	}
	out := map[Installed]BinaryPackage{}
	err := scanParagraphs(ctx, r, func(para []byte) error {
		first, _, _ := bytes.Cut(para, []byte("\n"))
		pkg, ok := bytes.CutPrefix(first, []byte("Package: "))
		if !ok || !names[string(bytes.TrimSpace(pkg))] {
			return nil
		}
		p, err := parseSingleParagraph(para)
		if err != nil {
			return err
		}
		key := Installed{Name: p.get("Package"), Version: p.get("Version"), Arch: p.get("Architecture")}
		if !wanted[key] {
			return nil
		}
		size, err := strconv.ParseInt(p.get("Size"), 10, 64)
		b := BinaryPackage{Name: key.Name, Version: key.Version, Arch: key.Arch, Filename: p.get("Filename"), Size: size, SHA256: p.get("SHA256")}
		if err != nil || size <= 0 || !vocab.IsSHA256Hex(b.SHA256) || !strings.HasPrefix(b.Filename, "pool/") || validDirectory(b.Filename) != nil {
			return fmt.Errorf("%w: Packages entry %s %s: bad Filename, Size or SHA256", ErrMalformed, key.Name, key.Version)
		}
		out[key] = b
		return nil
	})
	return out, err
}
