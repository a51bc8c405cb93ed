// Package debfile reads a binary package (.deb) a user or apt hands to
// Lebowski and says exactly what is wrong with it when something is.
//
// A downloaded .deb is untrusted bytes: Inspect checks the ar container,
// the member order deb(5) requires, and decompresses every member to its
// end (so the xz/gzip/zstd checksums and the tar structure are checked, not
// only the control file), then returns the fields verify needs. Damage is a
// *DamageError naming the member and the problem; verify turns it into
// DO NOT INSTALL instead of a usage error.
package debfile

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"

	"pault.ag/go/debian/control"
	"pault.ag/go/debian/deb"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Info is what verify reads from a .deb.
type Info struct {
	Package      string `json:"package"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	// Source is the source package name without a version ("hello" for
	// "Source: hello (2.10-3)"); the binary package name when absent.
	Source string `json:"source"`
	// SourceVersion is the version in "Source: name (version)", if any.
	SourceVersion string `json:"source_version,omitempty"`
	// DebianVersion and Opinion split a Lebowski version (2.10-3~o3+1);
	// for other versions DebianVersion is Version and Opinion is "".
	DebianVersion string `json:"debian_version"`
	Opinion       string `json:"opinion,omitempty"`
	Size          int64  `json:"size"`
	// Control is the control file as the package holds it.
	Control []byte `json:"-"`
}

// maxControl bounds the control file (real ones are a few KiB).
const maxControl = 1 << 20

// FileName is the canonical pool file name: package_version_arch.deb
// without the epoch.
func (i *Info) FileName() string {
	return fmt.Sprintf("%s_%s_%s.deb", i.Package, vocab.StripEpoch(i.Version), i.Architecture)
}

// DamageError says a file is not an intact .deb: which part and why.
type DamageError struct {
	Member  string // ar member, "" for the container itself
	Problem string
}

func (e *DamageError) Error() string {
	if e.Member == "" {
		return "not an intact .deb: " + e.Problem
	}
	return fmt.Sprintf("not an intact .deb: member %s: %s", e.Member, e.Problem)
}

// IsDamaged reports whether err is a *DamageError.
func IsDamaged(err error) bool {
	var d *DamageError
	return errors.As(err, &d)
}

func damaged(member, format string, args ...any) error {
	return &DamageError{Member: member, Problem: fmt.Sprintf(format, args...)}
}

// ErrNotRegular: the path names a directory, device or socket.
var ErrNotRegular = errors.New("not a regular file")

// Read hashes the file at p (sha256, hex) and inspects it. sum is set
// whenever the file could be read, also when it is damaged (err is then a
// *DamageError). Other errors are about the path: fs.ErrNotExist,
// ErrNotRegular, or the file could not be read.
func Read(ctx context.Context, p string) (info *Info, sum string, err error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, "", err
	}
	if !st.Mode().IsRegular() {
		return nil, "", fmt.Errorf("%s: %w (%s)", p, ErrNotRegular, st.Mode().Type())
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", p, err)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	info, err = Inspect(ctx, f, st.Size())
	return info, sum, err
}

// Open inspects the file at p (Read without the hash).
func Open(ctx context.Context, p string) (*Info, error) {
	info, _, err := Read(ctx, p)
	return info, err
}

// Inspect checks the .deb in r (size bytes) and returns its fields. When
// only the data member is damaged, the *DamageError comes with the fields
// read from the intact control member (info is nil otherwise).
func Inspect(ctx context.Context, r io.ReaderAt, size int64) (*Info, error) {
	if size == 0 {
		return nil, damaged("", "the file is empty (0 bytes)")
	}
	members, err := readAr(r, size)
	if err != nil {
		return nil, err
	}
	// deb(5): debian-binary first, then control.tar[.ext], then data.tar[.ext].
	if len(members) < 3 {
		return nil, damaged("", "%d ar members, a .deb has debian-binary, control.tar.* and data.tar.*", len(members))
	}
	if members[0].Name != "debian-binary" {
		return nil, damaged("", "first member is %q, not debian-binary", members[0].Name)
	}
	if members[0].Size > 16 {
		return nil, damaged("debian-binary", "%d bytes, want \"2.0\\n\"", members[0].Size)
	}
	v := make([]byte, members[0].Size)
	if _, err := members[0].Data.ReadAt(v, 0); err != nil || !formatRE.Match(v) {
		return nil, damaged("debian-binary", "format %q, want \"2.0\\n\"", v)
	}
	ctl, data := members[1], members[2]
	if !strings.HasPrefix(ctl.Name, "control.tar") {
		return nil, damaged("", "second member is %q, not control.tar.*", ctl.Name)
	}
	if !strings.HasPrefix(data.Name, "data.tar") {
		return nil, damaged("", "third member is %q, not data.tar.*", data.Name)
	}
	info := &Info{Size: size}
	var para *control.Paragraph
	err = walkTar(ctx, ctl, func(h *tar.Header, tr io.Reader) error {
		if path.Clean(h.Name) != "control" {
			return nil
		}
		if para != nil {
			return damaged(ctl.Name, "two control files")
		}
		raw, err := io.ReadAll(io.LimitReader(tr, maxControl+1))
		if err != nil {
			return damaged(ctl.Name, "control file: %v", err)
		}
		if len(raw) > maxControl {
			return damaged(ctl.Name, "control file larger than %d bytes", maxControl)
		}
		info.Control = raw
		pr, err := control.NewParagraphReader(bytes.NewReader(raw), nil)
		if err != nil {
			return damaged(ctl.Name, "control file: %v", err)
		}
		p, err := pr.Next()
		if err != nil {
			return damaged(ctl.Name, "control file: %v", err)
		}
		para = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	if para == nil {
		return nil, damaged(ctl.Name, "no control file")
	}
	if err := fill(info, para); err != nil {
		return nil, damaged(ctl.Name, "control file: %v", err)
	}
	if err := walkTar(ctx, data, func(*tar.Header, io.Reader) error { return nil }); err != nil {
		// The control data was intact: the caller may still compare the
		// file with what builders attest for that package and version.
		return info, err
	}
	return info, nil
}

// formatRE is the debian-binary content deb(5) allows: major 2.
var formatRE = regexp.MustCompile(`^2\.[0-9]+\n$`)

func fill(info *Info, p *control.Paragraph) error {
	info.Package = p.Values["Package"]
	info.Version = p.Values["Version"]
	info.Architecture = p.Values["Architecture"]
	if err := vocab.CheckPackage(info.Package); err != nil {
		return err
	}
	if err := vocab.CheckVersion(info.Version); err != nil {
		return err
	}
	if err := vocab.CheckArch(info.Architecture); err != nil {
		return err
	}
	info.Source = info.Package
	if s := strings.TrimSpace(p.Values["Source"]); s != "" {
		name, ver, _ := strings.Cut(s, " ")
		if err := vocab.CheckPackage(name); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		info.Source = name
		if ver = strings.TrimSpace(ver); ver != "" {
			if !strings.HasPrefix(ver, "(") || !strings.HasSuffix(ver, ")") {
				return fmt.Errorf("source %q: version not in parentheses", s)
			}
			info.SourceVersion = strings.TrimSpace(ver[1 : len(ver)-1])
		}
	}
	info.DebianVersion = info.Version
	if bv, ok := vocab.ParseBinaryVersion(info.Version); ok {
		info.DebianVersion, info.Opinion = bv.Debian, bv.Opinion
	} else if info.SourceVersion != "" { // binNMU or a binary versioned apart from its source
		if err := vocab.CheckVersion(info.SourceVersion); err != nil {
			return fmt.Errorf("source version: %w", err)
		}
		info.DebianVersion = info.SourceVersion
	}
	return nil
}

// readAr lists the ar members, checking each lies inside the file.
func readAr(r io.ReaderAt, size int64) ([]*deb.ArEntry, error) {
	magic := make([]byte, 8)
	if n, _ := r.ReadAt(magic, 0); n < 8 || string(magic) != "!<arch>\n" {
		return nil, damaged("", "not an ar archive (a .deb starts with \"!<arch>\\n\")")
	}
	ar, err := deb.LoadAr(r)
	if err != nil {
		return nil, damaged("", "ar header: %v", err)
	}
	var out []*deb.ArEntry
	off := int64(8)
	for {
		if off == size {
			return out, nil
		}
		if size-off < 60 {
			return nil, damaged("", "truncated: %d stray bytes after the last member", size-off)
		}
		e, err := ar.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, damaged("", "ar member header at byte %d: %v", off, err)
		}
		if e.Size < 0 {
			return nil, damaged(e.Name, "negative size in the ar header")
		}
		end := off + 60 + e.Size
		if end > size {
			return nil, damaged(e.Name, "truncated: needs %d bytes, the file ends after %d", e.Size, size-off-60)
		}
		off = end + e.Size%2
		if off > size { // odd member without its padding byte
			off = size
		}
		if len(out) == 16 {
			return nil, damaged("", "more than 16 ar members")
		}
		out = append(out, e)
	}
}

// walkTar decompresses a tar member to its end, calling fn per entry.
func walkTar(ctx context.Context, m *deb.ArEntry, fn func(*tar.Header, io.Reader) error) error {
	ext := path.Ext(m.Name)
	switch ext {
	case ".tar", ".gz", ".xz", ".zst", ".bz2":
	default:
		return damaged(m.Name, "unknown compression %q", ext)
	}
	dec, err := deb.DecompressorFor(ext)(m.Data)
	if err != nil {
		return damaged(m.Name, "decompressing: %v", err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return damaged(m.Name, "reading: %v", err)
		}
		if err := fn(h, tr); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return damaged(m.Name, "reading %s: %v", h.Name, err)
		}
	}
	// Drain past the tar end marker so the compressed stream's own
	// checksum is read and checked.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return damaged(m.Name, "after the last entry: %v", err)
	}
	return nil
}
