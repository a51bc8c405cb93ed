package opinions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// LockType names the lock format.
const LockType = "lebowski.lock/v1"

// Lock limits.
const (
	MaxLockSize    = 4 << 20 // a lock file
	MaxLockDebs    = 5000    // binary packages in one image closure
	MaxSourceFiles = 64      // files of one source package besides the .dsc
)

// Lock pins every input of a recipe, the way a .buildinfo pins a Debian
// build environment and Cargo.lock pins crates: the exact Debian source
// (the .dsc and every file it names) and the full closure of the build
// image (every binary package), each by size and sha256, with where it
// lives in the Debian archive. It is resolved once from the verified
// mirror (`lebowski opinion lock`) and lives beside the opinion as
// <name>.lock; the opinion's CID covers it, and builders make the image
// from exactly these .debs and nothing else (docs/BUILDER.md).
type Lock struct {
	Type    string `json:"type"`
	Package string `json:"package"`           // source package
	Opinion string `json:"opinion,omitempty"` // "" for a vanilla build
	Suite   string `json:"suite"`
	Arch    string `json:"arch"`
	// MirrorDate is the Date of the suite's InRelease the lock was
	// resolved from: the Debian archive state it pins. The snapshot
	// archive is asked for the state a day later (Snapshot).
	MirrorDate time.Time `json:"mirror_date"`
	// ImageEpoch is the SOURCE_DATE_EPOCH the image is made with.
	ImageEpoch int64      `json:"image_epoch"`
	Source     LockSource `json:"source"`
	// Image is the build image's full package closure, sorted by name.
	Image []LockDeb `json:"image"`
}

// LockSource pins a Debian source package.
type LockSource struct {
	Version   string     `json:"version"`
	Directory string     `json:"directory"` // pool directory, e.g. pool/main/h/hello
	Dsc       LockFile   `json:"dsc"`
	Files     []LockFile `json:"files"` // the files the .dsc names, sorted by name
}

// LockFile is one file by name, size and sha256.
type LockFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// LockDeb is one binary package of the image.
type LockDeb struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Arch     string `json:"arch"`
	Filename string `json:"filename"` // path in the archive, e.g. pool/main/h/hello/hello_2.10-3_amd64.deb
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// ErrLock wraps every problem with a lock's content (and unwraps to
// ErrInvalid).
var ErrLock = fmt.Errorf("%w: bad lock", ErrInvalid)

func lockErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrLock, fmt.Sprintf(format, a...))
}

// ParseLock decodes a lock strictly (no unknown fields, no trailing data)
// and validates it.
func ParseLock(b []byte) (*Lock, error) {
	if len(b) > MaxLockSize {
		return nil, lockErr("%d bytes, more than %d", len(b), MaxLockSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var l Lock
	if err := d.Decode(&l); err != nil {
		return nil, lockErr("%v", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, lockErr("trailing data after the lock")
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return &l, nil
}

// ReadLock reads and parses a lock file (a regular file of at most
// MaxLockSize bytes).
func ReadLock(p string) (*Lock, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, lockErr("%s is not a regular file", p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	l, err := ParseLock(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return l, nil
}

// cleanPoolPath reports whether p is a clean relative archive path.
func cleanPoolPath(p string) bool {
	if p == "" || len(p) > 1024 || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "..") {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." || vocab.CheckFileName(seg) != nil {
			return false
		}
	}
	return true
}

func checkFile(what string, f LockFile) error {
	switch {
	case vocab.CheckFileName(f.Name) != nil:
		return lockErr("%s: bad file name %q", what, f.Name)
	case f.Size <= 0:
		return lockErr("%s %s: size %d", what, f.Name, f.Size)
	case !vocab.IsSHA256Hex(f.SHA256):
		return lockErr("%s %s: sha256 %q is not 64 lower-case hex digits", what, f.Name, f.SHA256)
	}
	return nil
}

// Validate checks every field; errors name the entry.
func (l *Lock) Validate() error {
	switch {
	case l.Type != LockType:
		return lockErr("type %q, want %q", l.Type, LockType)
	case vocab.CheckPackage(l.Package) != nil:
		return lockErr("package: %v", vocab.CheckPackage(l.Package))
	case l.Opinion != "" && vocab.CheckOpinionName(l.Opinion) != nil:
		return lockErr("opinion: %v", vocab.CheckOpinionName(l.Opinion))
	case vocab.CheckSuite(l.Suite) != nil:
		return lockErr("suite: %v", vocab.CheckSuite(l.Suite))
	case vocab.CheckArch(l.Arch) != nil:
		return lockErr("arch: %v", vocab.CheckArch(l.Arch))
	case l.MirrorDate.IsZero():
		return lockErr("mirror_date missing")
	case l.ImageEpoch <= 0 || l.ImageEpoch > maxEpoch:
		return lockErr("image_epoch %d out of range", l.ImageEpoch)
	case vocab.CheckVersion(l.Source.Version) != nil:
		return lockErr("source.version: %v", vocab.CheckVersion(l.Source.Version))
	case !cleanPoolPath(l.Source.Directory):
		return lockErr("source.directory %q is not a clean archive path", l.Source.Directory)
	case !strings.HasSuffix(l.Source.Dsc.Name, ".dsc"):
		return lockErr("source.dsc %q is not a .dsc", l.Source.Dsc.Name)
	case len(l.Source.Files) == 0 || len(l.Source.Files) > MaxSourceFiles:
		return lockErr("source.files: %d files (want 1 to %d)", len(l.Source.Files), MaxSourceFiles)
	case len(l.Image) == 0 || len(l.Image) > MaxLockDebs:
		return lockErr("image: %d packages (want 1 to %d)", len(l.Image), MaxLockDebs)
	}
	if err := checkFile("source.dsc", l.Source.Dsc); err != nil {
		return err
	}
	seen := map[string]bool{l.Source.Dsc.Name: true}
	for i, f := range l.Source.Files {
		if err := checkFile(fmt.Sprintf("source.files[%d]", i), f); err != nil {
			return err
		}
		if seen[f.Name] {
			return lockErr("source.files[%d]: %s listed twice", i, f.Name)
		}
		seen[f.Name] = true
		if i > 0 && l.Source.Files[i-1].Name > f.Name {
			return lockErr("source.files not sorted by name at %s", f.Name)
		}
	}
	for i, d := range l.Image {
		what := fmt.Sprintf("image[%d] %s", i, d.Name)
		switch {
		case vocab.CheckPackage(d.Name) != nil:
			return lockErr("image[%d]: %v", i, vocab.CheckPackage(d.Name))
		case vocab.CheckVersion(d.Version) != nil:
			return lockErr("%s: %v", what, vocab.CheckVersion(d.Version))
		case vocab.CheckArch(d.Arch) != nil || (d.Arch != "all" && d.Arch != l.Arch):
			return lockErr("%s: architecture %q (want %s or all)", what, d.Arch, l.Arch)
		case !cleanPoolPath(d.Filename) || !strings.HasSuffix(d.Filename, ".deb"):
			return lockErr("%s: filename %q is not a clean archive path to a .deb", what, d.Filename)
		case d.Size <= 0:
			return lockErr("%s: size %d", what, d.Size)
		case !vocab.IsSHA256Hex(d.SHA256):
			return lockErr("%s: sha256 %q is not 64 lower-case hex digits", what, d.SHA256)
		case i > 0 && l.Image[i-1].Name >= d.Name:
			return lockErr("%s: image not sorted by name, or listed twice", what)
		}
	}
	return nil
}

// Normalize sorts the lists and puts times in UTC seconds: what Validate
// expects of a lock made by code.
func (l *Lock) Normalize() {
	l.Type = LockType
	l.MirrorDate = l.MirrorDate.UTC().Truncate(time.Second)
	sort.Slice(l.Source.Files, func(i, j int) bool { return l.Source.Files[i].Name < l.Source.Files[j].Name })
	sort.Slice(l.Image, func(i, j int) bool { return l.Image[i].Name < l.Image[j].Name })
}

// Encode is the lock as written to disk: the canonical JSON's keys and
// values, laid out one field a line and one source file or image package
// a line, so that a re-lock after a point release diffs as one line per
// changed package. Whitespace is not part of the lock's identity (the
// opinion's CID covers the canonical form).
func (l *Lock) Encode() []byte {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(canonicalJSON(l), &doc); err != nil {
		panic("opinions: lock encoding: " + err.Error())
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, k := range keys {
		fmt.Fprintf(&b, "  %q: ", k)
		switch k {
		case "image":
			writeLines(&b, "  ", l.Image)
		case "source":
			var src map[string]json.RawMessage
			_ = json.Unmarshal(doc[k], &src)
			sk := make([]string, 0, len(src))
			for k := range src {
				sk = append(sk, k)
			}
			sort.Strings(sk)
			b.WriteString("{\n")
			for j, k2 := range sk {
				fmt.Fprintf(&b, "    %q: ", k2)
				if k2 == "files" {
					writeLines(&b, "    ", l.Source.Files)
				} else {
					b.Write(src[k2])
				}
				if j < len(sk)-1 {
					b.WriteString(",")
				}
				b.WriteString("\n")
			}
			b.WriteString("  }")
		default:
			b.Write(doc[k])
		}
		if i < len(keys)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// writeLines writes a JSON array with one canonical element a line.
func writeLines[T any](b *bytes.Buffer, indent string, items []T) {
	b.WriteString("[\n")
	for i, it := range items {
		b.WriteString(indent + "  ")
		b.Write(canonicalJSON(it))
		if i < len(items)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString(indent + "]")
}

// Canonical is the lock's identity encoding (sorted keys, no whitespace):
// what the opinion's CID covers and what a build publishes as a blob.
func (l *Lock) Canonical() []byte { return canonicalJSON(l) }

// Snapshot is the timestamp to ask the Debian snapshot archive for
// (/archive/debian/<ts>/): a day after MirrorDate, since snapshot imports
// the archive a few times a day and a file is there from the first import
// after it was published.
func (l *Lock) Snapshot() string {
	return l.MirrorDate.Add(24 * time.Hour).UTC().Format("20060102T150405Z")
}

// Packages are the image's package names.
func (l *Lock) Packages() []string {
	out := make([]string, len(l.Image))
	for i, d := range l.Image {
		out[i] = d.Name
	}
	return out
}

// ImageKey is the hex sha256 of the canonical image part (suite, arch,
// epoch, packages): the image cache key, so nodes with equal locks share
// an image whatever the rest of the lock says.
func (l *Lock) ImageKey() string {
	b := canonicalJSON(map[string]any{"suite": l.Suite, "arch": l.Arch, "image_epoch": l.ImageEpoch, "image": l.Image})
	return vocab.CID(b)
}

// canonicalJSON encodes v with object keys sorted, no HTML escaping and no
// insignificant whitespace.
func canonicalJSON(v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		panic("opinions: canonical json: " + err.Error())
	}
	var generic any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&generic); err != nil {
		panic("opinions: canonical json: " + err.Error())
	}
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(generic); err != nil {
		panic("opinions: canonical json: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}
