package source

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Parsers for the deb822 texts this package reads: Release (after its
// signature is checked), Sources paragraphs and .dsc files. All inputs are
// untrusted bytes until their hash or signature is checked, so every parser
// bounds what it keeps and returns ErrMalformed instead of panicking.

const (
	maxLineLen      = 4 << 20 // one physical line (Checksums lines are short, Description-like fields are not here)
	maxParagraphLen = 8 << 20 // one paragraph, all lines
)

// paragraph is one deb822 stanza. Field names are matched case-insensitively
// (Debian policy §5.1), so keys are stored lower-cased; values keep their
// continuation lines joined with "\n", leading whitespace of each
// continuation line removed.
type paragraph map[string]string

func (p paragraph) get(name string) string { return p[strings.ToLower(name)] }

// paragraphReader streams paragraphs out of a deb822 document.
type paragraphReader struct {
	sc   *bufio.Scanner
	line int
}

func newParagraphReader(r io.Reader) *paragraphReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineLen)
	return &paragraphReader{sc: sc}
}

// next returns the next paragraph, or io.EOF when there is none left.
func (pr *paragraphReader) next() (paragraph, error) {
	var (
		p    paragraph
		last string          // lower-cased name of the field being built
		val  strings.Builder // its value (continuation lines appended in O(n))
		size int
	)
	flush := func() {
		if last != "" {
			p[last] = val.String()
			val.Reset()
			last = ""
		}
	}
	for pr.sc.Scan() {
		pr.line++
		raw := pr.sc.Bytes()
		size += len(raw) + 1
		if size > maxParagraphLen {
			return nil, fmt.Errorf("%w: line %d: paragraph longer than %d bytes", ErrMalformed, pr.line, maxParagraphLen)
		}
		line := strings.TrimRight(string(raw), " \t\r")
		if line == "" {
			if p != nil {
				flush()
				return p, nil
			}
			continue // extra blank lines between paragraphs
		}
		if line[0] == '#' && p == nil {
			continue // comment lines before a paragraph (allowed in some deb822 files)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return nil, fmt.Errorf("%w: line %d: continuation line without a field", ErrMalformed, pr.line)
			}
			cont := strings.TrimLeft(line, " \t")
			if cont == "." {
				cont = "" // deb822 empty-line marker
			}
			if val.Len() > 0 || cont == "" {
				val.WriteByte('\n')
			}
			val.WriteString(cont)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: line %d: expected \"Field: value\", got %q", ErrMalformed, pr.line, truncate(line, 60))
		}
		if p == nil {
			p = paragraph{}
		}
		flush()
		key := strings.ToLower(name)
		if _, dup := p[key]; dup {
			return nil, fmt.Errorf("%w: line %d: field %q appears twice in one paragraph", ErrMalformed, pr.line, name)
		}
		p[key] = "" // mark as seen for the duplicate check
		last = key
		val.WriteString(strings.TrimLeft(value, " \t"))
	}
	if err := pr.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d longer than %d bytes", ErrMalformed, pr.line+1, maxLineLen)
		}
		return nil, err
	}
	if p != nil {
		flush()
		return p, nil
	}
	return nil, io.EOF
}

// parseSingleParagraph parses a document that must hold exactly one
// paragraph (Release, .dsc).
func parseSingleParagraph(b []byte) (paragraph, error) {
	pr := newParagraphReader(bytes.NewReader(b))
	p, err := pr.next()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: empty document", ErrMalformed)
	}
	if err != nil {
		return nil, err
	}
	if _, err := pr.next(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: more than one paragraph", ErrMalformed)
	}
	return p, nil
}

// checksum is one line of a Checksums-Sha256 / SHA256 field.
type checksum struct {
	SHA256 string
	Size   int64
	Name   string
}

// parseChecksums parses the lines "<sha256> <size> <name>" of a
// Checksums-Sha256 (or Release SHA256) field value.
func parseChecksums(field string) ([]checksum, error) {
	var out []checksum
	for i, line := range strings.Split(field, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.Fields(line)
		if len(parts) != 3 {
			return nil, fmt.Errorf("%w: checksum line %d: want \"<sha256> <size> <name>\", got %q", ErrMalformed, i+1, truncate(line, 80))
		}
		if !isSHA256Hex(parts[0]) {
			return nil, fmt.Errorf("%w: checksum line %d: %q is not a lower-case hex sha256", ErrMalformed, i+1, truncate(parts[0], 80))
		}
		size, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("%w: checksum line %d: bad size %q", ErrMalformed, i+1, truncate(parts[1], 30))
		}
		out = append(out, checksum{SHA256: parts[0], Size: size, Name: parts[2]})
	}
	return out, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// release is the part of a Release file this package uses.
type release struct {
	Suite, Codename string
	Date            time.Time
	ValidUntil      time.Time // zero when absent
	AcquireByHash   bool
	SHA256          map[string]checksum // by path relative to dists/<suite>/
}

// parseRelease parses the (already signature-checked) text of a Release
// file.
func parseRelease(b []byte) (*release, error) {
	p, err := parseSingleParagraph(b)
	if err != nil {
		return nil, fmt.Errorf("parse Release: %w", err)
	}
	r := &release{Suite: p.get("Suite"), Codename: p.get("Codename"), SHA256: map[string]checksum{}}
	if r.Suite == "" && r.Codename == "" {
		return nil, fmt.Errorf("parse Release: %w: neither Suite nor Codename is set", ErrMalformed)
	}
	if d := p.get("Date"); d != "" {
		if r.Date, err = parseReleaseTime(d); err != nil {
			return nil, fmt.Errorf("parse Release: Date: %w", err)
		}
	} else {
		return nil, fmt.Errorf("parse Release: %w: no Date field", ErrMalformed)
	}
	if v := p.get("Valid-Until"); v != "" {
		if r.ValidUntil, err = parseReleaseTime(v); err != nil {
			return nil, fmt.Errorf("parse Release: Valid-Until: %w", err)
		}
	}
	r.AcquireByHash = strings.EqualFold(p.get("Acquire-By-Hash"), "yes")
	sums, err := parseChecksums(p.get("SHA256"))
	if err != nil {
		return nil, fmt.Errorf("parse Release: SHA256: %w", err)
	}
	if len(sums) == 0 {
		return nil, fmt.Errorf("parse Release: %w: no SHA256 field (MD5-only Release files are refused)", ErrMalformed)
	}
	for _, c := range sums {
		r.SHA256[c.Name] = c
	}
	return r, nil
}

var releaseTimeLayouts = []string{
	time.RFC1123,                      // Mon, 02 Jan 2006 15:04:05 MST
	time.RFC1123Z,                     // Mon, 02 Jan 2006 15:04:05 -0700
	"Mon, 2 Jan 2006 15:04:05 MST",    // single-digit day
	"Mon, 2 Jan 2006 15:04:05 -0700",  //
	"Mon, _2 Jan 2006 15:04:05 MST",   //
	"Mon, _2 Jan 2006 15:04:05 -0700", //
}

func parseReleaseTime(s string) (time.Time, error) {
	for _, l := range releaseTimeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: unrecognised date %q (want RFC 1123, e.g. \"Sat, 11 Jul 2026 10:16:37 UTC\")", ErrMalformed, truncate(s, 60))
}

// sourcesEntry is the part of a Sources paragraph this package uses.
type sourcesEntry struct {
	Package, Version string
	Directory        string
	Files            []checksum // Checksums-Sha256, including the .dsc
	ExtraSourceOnly  bool
}

// dscFile returns the .dsc among the entry's files.
func (e *sourcesEntry) dscFile() (checksum, error) {
	var found []checksum
	for _, f := range e.Files {
		if strings.HasSuffix(f.Name, ".dsc") {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		return checksum{}, fmt.Errorf("%w: Sources entry %s %s lists %d .dsc files, want 1", ErrMalformed, e.Package, e.Version, len(found))
	}
	return found[0], nil
}

// parseSourcesEntry validates one Sources paragraph. It does not check that
// the package is the one asked for; the caller filters on Package first.
func parseSourcesEntry(p paragraph) (*sourcesEntry, error) {
	e := &sourcesEntry{
		Package:         p.get("Package"),
		Version:         p.get("Version"),
		Directory:       p.get("Directory"),
		ExtraSourceOnly: strings.EqualFold(p.get("Extra-Source-Only"), "yes"),
	}
	if !validPackageName(e.Package) {
		return nil, fmt.Errorf("%w: Sources: bad Package %q", ErrMalformed, truncate(e.Package, 80))
	}
	if err := validVersion(e.Version); err != nil {
		return nil, fmt.Errorf("%w: Sources: package %s: %v", ErrMalformed, e.Package, err)
	}
	if err := validDirectory(e.Directory); err != nil {
		return nil, fmt.Errorf("%w: Sources: package %s %s: %v", ErrMalformed, e.Package, e.Version, err)
	}
	files, err := parseChecksums(p.get("Checksums-Sha256"))
	if err != nil {
		return nil, fmt.Errorf("Sources: package %s %s: Checksums-Sha256: %w", e.Package, e.Version, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: Sources: package %s %s has no Checksums-Sha256", ErrMalformed, e.Package, e.Version)
	}
	seen := map[string]bool{}
	for _, f := range files {
		if !validFileName(f.Name) {
			return nil, fmt.Errorf("%w: Sources: package %s %s: bad file name %q", ErrMalformed, e.Package, e.Version, truncate(f.Name, 80))
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("%w: Sources: package %s %s lists %s twice", ErrMalformed, e.Package, e.Version, f.Name)
		}
		seen[f.Name] = true
	}
	e.Files = files
	if _, err := e.dscFile(); err != nil {
		return nil, err
	}
	return e, nil
}

// dsc is the part of a .dsc this package uses.
type dsc struct {
	Source, Version, Format, Architecture string
	BuildDepends, BuildConflicts          string
	Files                                 []checksum // Checksums-Sha256 (without the .dsc itself)
}

// parseDsc parses a .dsc, clearsigned or not. The uploader's signature is
// not checked: the .dsc is authenticated by its sha256 from Sources, which
// is authenticated by InRelease.
func parseDsc(b []byte) (*dsc, error) {
	body := b
	if bytes.Contains(b, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		blk, _ := clearsign.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("parse .dsc: %w: broken clearsign armor", ErrMalformed)
		}
		body = blk.Plaintext
	}
	p, err := parseSingleParagraph(body)
	if err != nil {
		return nil, fmt.Errorf("parse .dsc: %w", err)
	}
	d := &dsc{
		Source:       p.get("Source"),
		Version:      p.get("Version"),
		Format:       p.get("Format"),
		Architecture: oneLine(p.get("Architecture")),
		BuildDepends: joinRelations(p.get("Build-Depends"), p.get("Build-Depends-Arch"), p.get("Build-Depends-Indep")),
		BuildConflicts: joinRelations(p.get("Build-Conflicts"), p.get("Build-Conflicts-Arch"),
			p.get("Build-Conflicts-Indep")),
	}
	if !validPackageName(d.Source) {
		return nil, fmt.Errorf("parse .dsc: %w: bad Source %q", ErrMalformed, truncate(d.Source, 80))
	}
	if err := validVersion(d.Version); err != nil {
		return nil, fmt.Errorf("parse .dsc: %w: %v", ErrMalformed, err)
	}
	if d.Format == "" {
		return nil, fmt.Errorf("parse .dsc: %w: no Format field", ErrMalformed)
	}
	if d.Files, err = parseChecksums(p.get("Checksums-Sha256")); err != nil {
		return nil, fmt.Errorf("parse .dsc: Checksums-Sha256: %w", err)
	}
	if len(d.Files) == 0 {
		return nil, fmt.Errorf("parse .dsc: %w: no Checksums-Sha256 field", ErrMalformed)
	}
	for _, f := range d.Files {
		if !validFileName(f.Name) {
			return nil, fmt.Errorf("parse .dsc: %w: bad file name %q", ErrMalformed, truncate(f.Name, 80))
		}
	}
	return d, nil
}

// joinRelations joins relation fields into one comma-separated list, with
// the line breaks of multi-line fields folded.
func joinRelations(fields ...string) string {
	var parts []string
	for _, f := range fields {
		f = strings.Trim(oneLine(f), " ,")
		if f != "" {
			parts = append(parts, f)
		}
	}
	return strings.Join(parts, ", ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var ()

func validPackageName(s string) bool { return vocab.IsPackage(s) }
func validSuite(s string) bool       { return vocab.CheckSuite(s) == nil }
func validFileName(s string) bool    { return vocab.CheckFileName(s) == nil }
func validVersion(s string) error    { return vocab.CheckVersion(s) }

// validDirectory accepts the pool path of a Sources entry: relative,
// clean, no "..".
func validDirectory(s string) error {
	if s == "" || len(s) > 500 {
		return fmt.Errorf("bad Directory %q", truncate(s, 80))
	}
	if path.IsAbs(s) || path.Clean(s) != s || s == "." {
		return fmt.Errorf("Directory %q is not a clean relative path", truncate(s, 80))
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." || !validFileName(seg) {
			return fmt.Errorf("Directory %q has a bad segment %q", truncate(s, 80), truncate(seg, 40))
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
