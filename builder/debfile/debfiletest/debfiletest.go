// Package debfiletest makes real .deb files with dpkg-deb and damaged
// copies of them, for tests of everything that reads packages.
package debfiletest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Package describes a tiny binary package.
type Package struct {
	Name, Version, Arch, Source string
}

// Build runs dpkg-deb --build (xz) and returns the .deb's path in dir.
func Build(t testing.TB, dir string, p Package) string {
	t.Helper()
	if p.Arch == "" {
		p.Arch = "amd64"
	}
	root := filepath.Join(dir, "root-"+p.Name+"-"+p.Arch)
	must(t, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "usr/share/doc", p.Name), 0o755))
	ctl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: Test <t@example.org>\nDescription: test package\n", p.Name, p.Version, p.Arch)
	if p.Source != "" {
		ctl += "Source: " + p.Source + "\n"
	}
	must(t, os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(ctl), 0o644))
	// Enough incompressible-ish text that data.tar.xz has a body to damage.
	var doc bytes.Buffer
	for i := 0; i < 400; i++ {
		fmt.Fprintf(&doc, "line %d of %s %x\n", i, p.Name, i*7919)
	}
	must(t, os.WriteFile(filepath.Join(root, "usr/share/doc", p.Name, "README"), doc.Bytes(), 0o644))
	out := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", p.Name, p.Version, p.Arch))
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, b)
	}
	return out
}

// Damage is one way a .deb can be broken.
type Damage struct {
	Name string
	Data []byte
	// Member is the ar member the damage is in ("" for the container);
	// a reader should name it.
	Member string
}

// Damages returns the ways to break a good .deb: a byte flipped in the
// middle of each member in turn, a broken ar header, truncations, a file
// that is not a .deb, an empty file.
func Damages(t testing.TB, good []byte) []Damage {
	t.Helper()
	var out []Damage
	for _, m := range Members(t, good) {
		d := bytes.Clone(good)
		d[m.Offset+m.Size/2] ^= 0xff
		out = append(out, Damage{Name: "flipped byte in " + m.Name, Data: d, Member: m.Name})
		if m.Size > 8 {
			d := bytes.Clone(good)
			d[m.Offset+m.Size-1] ^= 0x01
			out = append(out, Damage{Name: "flipped last byte of " + m.Name, Data: d, Member: m.Name})
		}
		d = bytes.Clone(good)
		copy(d[m.Offset-60+48:], "9999999999") // size field
		out = append(out, Damage{Name: "bad ar size of " + m.Name, Data: d, Member: m.Name})
	}
	d := bytes.Clone(good)
	d[0] = '?'
	out = append(out, Damage{Name: "bad ar magic", Data: d})
	for _, n := range []int{len(good) - 1, len(good) * 3 / 4, len(good) / 2, 70, 8, 3} {
		out = append(out, Damage{Name: fmt.Sprintf("truncated to %d bytes", n), Data: bytes.Clone(good[:n])})
	}
	out = append(out,
		Damage{Name: "a text file named .deb", Data: []byte("<html>404 Not Found</html>\n")},
		Damage{Name: "empty file", Data: nil},
	)
	return out
}

// Member locates one ar member's data in a .deb.
type Member struct {
	Name         string
	Offset, Size int
}

// Members parses the ar headers of a good .deb.
func Members(t testing.TB, b []byte) []Member {
	t.Helper()
	var out []Member
	off := 8
	for off+60 <= len(b) {
		h := b[off : off+60]
		var size int
		if _, err := fmt.Sscan(string(bytes.TrimSpace(h[48:58])), &size); err != nil {
			t.Fatalf("ar header at %d: %v", off, err)
		}
		name := string(bytes.TrimRight(bytes.TrimSpace(h[0:16]), "/"))
		out = append(out, Member{Name: name, Offset: off + 60, Size: size})
		off += 60 + size + size%2
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
