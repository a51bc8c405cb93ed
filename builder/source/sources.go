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
	var idx sourcesIndex
	var sum checksum
	for _, si := range sourcesIndexes {
		if c, ok := rel.SHA256[si.path]; ok {
			idx, sum = si, c
			break
		}
	}
	if idx.path == "" {
		return nil, fmt.Errorf("%w: Release of %s lists none of main/source/Sources.gz, Sources.xz, Sources", ErrNotFound, suite)
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
		return nil, err
	}
	fh, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer fh.Close()
	r, err := idx.opener(fh)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", name, err)
	}
	entries, err := findSources(ctx, io.LimitReader(r, maxSourcesUnpack), pkg)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return entries, nil
}

// findSources reads Sources paragraphs from r and returns the validated
// entries whose Package is pkg. Only paragraphs that contain pkg's name at
// all are parsed (a Sources file has tens of thousands of paragraphs; this
// makes a scan of bookworm's 50 MB Sources ~2.7x faster: 1.4 s instead of
// 3.7 s including gunzip, measured on a loaded 2-core box). Paragraphs are split
// by the same rule as paragraphReader: a line that is empty after
// trimming spaces, tabs and CR.
func findSources(ctx context.Context, r io.Reader, pkg string) ([]*sourcesEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineLen)
	needle := []byte(pkg)
	var out []*sourcesEntry
	var para []byte
	n := 0
	check := func() error {
		defer func() { para = para[:0] }()
		if len(para) == 0 || !bytes.Contains(para, needle) {
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
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimRight(line, " \t\r")) == 0 {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			if err := check(); err != nil {
				return nil, err
			}
			continue
		}
		if len(para)+len(line)+1 > maxParagraphLen {
			return nil, fmt.Errorf("%w: paragraph longer than %d bytes", ErrMalformed, maxParagraphLen)
		}
		para = append(append(para, line...), '\n')
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", ErrMalformed, maxLineLen)
		}
		return nil, err
	}
	if err := check(); err != nil {
		return nil, err
	}
	return out, nil
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
