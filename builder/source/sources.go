package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"pault.ag/go/debian/version"

	"github.com/ulikunitz/xz"
)

// sourcesIndex is one form of main/source/Sources the Fetcher can read.
type sourcesIndex struct {
	path   string // relative to dists/<suite>/
	opener func(io.Reader) (io.Reader, error)
}

// sourcesIndexes in order of preference: gzip decodes fastest; some suites
// (bookworm-updates) ship only Sources.xz.
var sourcesIndexes = []sourcesIndex{
	{"main/source/Sources.gz", func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
	{"main/source/Sources.xz", func(r io.Reader) (io.Reader, error) { return xz.NewReader(r) }},
	{"main/source/Sources", func(r io.Reader) (io.Reader, error) { return r, nil }},
}

// scanSources downloads (or reuses) the suite's Sources, checked against
// the Release, and returns the entries for pkg.
func (f *Fetcher) scanSources(ctx context.Context, suite string, rel *checkedRelease, pkg string) ([]*sourcesEntry, error) {
	r, name, done, err := f.openIndex(ctx, suite, rel, sourcesIndexes)
	if err != nil {
		return nil, err
	}
	defer done()
	out, err := findSources(ctx, r, pkg)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}

// findSources reads Sources paragraphs from r and returns the validated
// entries whose Package is pkg. Only paragraphs that contain pkg's name at
// all are parsed (a Sources file has tens of thousands of paragraphs; this
// makes a scan of bookworm's 50 MB Sources ~2.7x faster: 1.4 s instead of
// 3.7 s including gunzip, measured on a loaded 2-core box).
func findSources(ctx context.Context, r io.Reader, pkg string) ([]*sourcesEntry, error) {
	needle := []byte(pkg)
	var out []*sourcesEntry
	err := scanParagraphs(ctx, r, func(para []byte) error {
		if !bytes.Contains(para, needle) {
			return nil
		}
		p, err := parseSingleParagraph(para)
		if err != nil {
			return err
		}
		if p.get("Package") != pkg {
			return nil
		}
		e, err := parseSourcesEntry(p)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// openIndex downloads (or reuses) the first of indexes the Release lists,
// checked against its sha256 (by-hash when the Release says so), and
// returns it decompressed, with its name and a function that closes it.
func (f *Fetcher) openIndex(ctx context.Context, suite string, rel *checkedRelease, indexes []sourcesIndex) (io.Reader, string, func(), error) {
	var idx sourcesIndex
	var sum checksum
	for _, si := range indexes {
		if c, ok := rel.SHA256[si.path]; ok {
			idx, sum = si, c
			break
		}
	}
	if idx.path == "" {
		var paths []string
		for _, si := range indexes {
			paths = append(paths, si.path)
		}
		return nil, "", nil, fmt.Errorf("%w: Release of %s lists none of %s", ErrNotFound, suite, strings.Join(paths, ", "))
	}
	base := f.mirror + "/dists/" + suite + "/"
	name := suite + "/" + idx.path
	var p string
	var err error
	if rel.AcquireByHash {
		// by-hash URLs do not change under us while the mirror updates.
		byHash := base + dirOf(idx.path) + "by-hash/SHA256/" + sum.SHA256
		p, err = f.fetchBlob(ctx, name, byHash, sum, maxSourcesSize)
		if errors.Is(err, ErrNotFound) {
			f.log.Debug("by-hash index missing, trying the plain path", "url", byHash)
			p, err = f.fetchBlob(ctx, name, base+idx.path, sum, maxSourcesSize)
		}
	} else {
		p, err = f.fetchBlob(ctx, name, base+idx.path, sum, maxSourcesSize)
	}
	if err != nil {
		return nil, "", nil, err
	}
	fh, err := os.Open(p)
	if err != nil {
		return nil, "", nil, fmt.Errorf("open %s: %w", name, err)
	}
	r, err := idx.opener(fh)
	if err != nil {
		fh.Close()
		return nil, "", nil, fmt.Errorf("decompress %s: %w", name, err)
	}
	return io.LimitReader(r, maxSourcesUnpack), name, func() { fh.Close() }, nil
}

// scanParagraphs reads deb822 paragraphs from r and hands each (its lines,
// each ending in "\n") to check. Paragraphs are split by the same rule as
// paragraphReader: a line that is empty after trimming spaces, tabs and
// CR. The paragraph's bytes are reused after check returns.
func scanParagraphs(ctx context.Context, r io.Reader, check func(para []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineLen)
	var para []byte
	n := 0
	flush := func() error {
		defer func() { para = para[:0] }()
		if len(para) == 0 {
			return nil
		}
		return check(para)
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimRight(line, " \t\r")) == 0 {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if len(para)+len(line)+1 > maxParagraphLen {
			return fmt.Errorf("%w: paragraph longer than %d bytes", ErrMalformed, maxParagraphLen)
		}
		para = append(append(para, line...), '\n')
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%w: line longer than %d bytes", ErrMalformed, maxLineLen)
		}
		return err
	}
	return flush()
}

// pickEntry selects the entry for version ver, or the highest version that
// is not Extra-Source-Only when ver is "".
func pickEntry(entries []*sourcesEntry, suite, pkg, ver string) (*sourcesEntry, error) {
	var best *sourcesEntry
	var bestV version.Version
	for _, e := range entries {
		if ver != "" {
			if e.Version == ver {
				return e, nil
			}
			continue
		}
		if e.ExtraSourceOnly {
			continue
		}
		v, err := version.Parse(e.Version)
		if err != nil {
			continue // validated already; unreachable
		}
		if best == nil || version.Compare(v, bestV) > 0 {
			best, bestV = e, v
		}
	}
	if best == nil {
		return nil, &NotFoundError{Suite: suite, Package: pkg, Version: ver, Available: versionsOf(entries)}
	}
	return best, nil
}

// versionsOf returns the distinct versions of entries, highest first.
func versionsOf(entries []*sourcesEntry) []string {
	seen := map[string]bool{}
	var vs []string
	for _, e := range entries {
		if !seen[e.Version] {
			seen[e.Version] = true
			vs = append(vs, e.Version)
		}
	}
	sort.Slice(vs, func(i, j int) bool {
		a, _ := version.Parse(vs[i])
		b, _ := version.Parse(vs[j])
		return version.Compare(a, b) > 0
	})
	return vs
}

func dirOf(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i+1]
		}
	}
	return ""
}
