package opinions

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func hexOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// testLock is a valid lock for hello/o3.
func testLock() *Lock {
	l := &Lock{
		Package: "hello", Opinion: "o3", Suite: "bookworm", Arch: "amd64",
		MirrorDate: time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC), ImageEpoch: 1686355200,
		Source: LockSource{Version: "2.10-3", Directory: "pool/main/h/hello",
			Dsc:   LockFile{Name: "hello_2.10-3.dsc", Size: 1847, SHA256: hexOf("dsc")},
			Files: []LockFile{{Name: "hello_2.10.orig.tar.gz", Size: 725946, SHA256: hexOf("orig")}, {Name: "hello_2.10-3.debian.tar.xz", Size: 12688, SHA256: hexOf("debian")}}},
		Image: []LockDeb{
			{Name: "libc6", Version: "2.36-9+deb12u14", Arch: "amd64", Filename: "pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb", Size: 2759000, SHA256: hexOf("libc6")},
			{Name: "adduser", Version: "3.134", Arch: "all", Filename: "pool/main/a/adduser/adduser_3.134_all.deb", Size: 183272, SHA256: hexOf("adduser")},
		},
	}
	l.Normalize()
	return l
}

func TestLockRoundTrip(t *testing.T) {
	l := testLock()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	b := l.Encode()
	back, err := ParseLock(b)
	if err != nil {
		t.Fatalf("ParseLock(Encode()): %v", err)
	}
	if !bytes.Equal(back.Encode(), b) {
		t.Fatal("encoding is not stable")
	}
	if l.Image[0].Name != "adduser" || l.Source.Files[0].Name != "hello_2.10-3.debian.tar.xz" {
		t.Fatal("Normalize did not sort")
	}
	if got := l.Snapshot(); got != "20260712T101637Z" {
		t.Fatalf("Snapshot() = %s", got)
	}
	if l.ImageKey() == "" || l.ImageKey() != back.ImageKey() {
		t.Fatal("image key unstable")
	}
	other := testLock()
	other.Source.Dsc.SHA256 = hexOf("other source")
	if other.ImageKey() != l.ImageKey() {
		t.Fatal("the image key depends only on the image part")
	}
}

func TestLockRefusals(t *testing.T) {
	tests := []struct {
		desc string
		mod  func(*Lock)
		want string
	}{
		{"wrong type", func(l *Lock) { l.Type = "lebowski.lock/v9" }, "type"},
		{"bad sha256 of a deb", func(l *Lock) { l.Image[1].SHA256 = "nothex" }, "image[1] libc6: sha256"},
		{"unknown package name", func(l *Lock) { l.Image[0].Name = "Bad_Name" }, "image[0]"},
		{"deb for another architecture", func(l *Lock) { l.Image[1].Arch = "arm64" }, "architecture"},
		{"path traversal in a filename", func(l *Lock) { l.Image[0].Filename = "pool/../../etc/passwd.deb" }, "filename"},
		{"not a .deb", func(l *Lock) { l.Image[0].Filename = "pool/main/a/adduser/adduser.tar" }, "filename"},
		{"zero size", func(l *Lock) { l.Image[0].Size = 0 }, "size"},
		{"unsorted image", func(l *Lock) { l.Image[0], l.Image[1] = l.Image[1], l.Image[0] }, "sorted"},
		{"duplicate package", func(l *Lock) { l.Image[1] = l.Image[0] }, "sorted"},
		{"bad source version", func(l *Lock) { l.Source.Version = "x" }, "source.version"},
		{"dsc is not a .dsc", func(l *Lock) { l.Source.Dsc.Name = "hello.tar" }, "source.dsc"},
		{"source file listed twice", func(l *Lock) { l.Source.Files[1] = l.Source.Files[0] }, "twice"},
		{"no mirror date", func(l *Lock) { l.MirrorDate = time.Time{} }, "mirror_date"},
		{"hyphenated opinion", func(l *Lock) { l.Opinion = "no-nls" }, "opinion"},
		{"absolute directory", func(l *Lock) { l.Source.Directory = "/pool/main/h/hello" }, "directory"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			l := testLock()
			tc.mod(l)
			_, err := ParseLock(canonicalJSON(l))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
	good := string(testLock().Encode())
	for _, bad := range []string{good + `{}`, strings.Replace(good, `"arch"`, `"arch":"amd64","extra":1,"x"`, 1), "", "null"} {
		if _, err := ParseLock([]byte(bad)); err == nil {
			t.Errorf("accepted %.60q", bad)
		}
	}
}

// TestOpinionWithLock: the lock beside the file is loaded, covered by the
// CID, and must pin the opinion's own recipe.
func TestOpinionWithLock(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir)
	path := filepath.Join(dir, "hello", "o3.yaml")
	before, err := Load(path, WithGitCommit(false))
	if err != nil {
		t.Fatal(err)
	}
	if before.Lock != nil {
		t.Fatal("lock without a file")
	}
	if err := os.WriteFile(before.LockPath(), testLock().Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := Load(path, WithGitCommit(false))
	if err != nil {
		t.Fatal(err)
	}
	if after.Lock == nil || after.CID() == before.CID() {
		t.Fatal("the lock is not covered by the CID")
	}
	wrong := testLock()
	wrong.Suite = "trixie"
	if err := os.WriteFile(before.LockPath(), wrong.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, WithGitCommit(false))
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "suite") {
		t.Fatalf("lock for another suite: err = %v", err)
	}
	if err := os.WriteFile(before.LockPath(), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, WithGitCommit(false)); err == nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("garbage lock: err = %v", err)
	}
}

// writeTree copies the shipped hello opinions (o3 and greeting with its
// patch) into dir/hello.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	if err := copyTree("hello", filepath.Join(dir, "hello")); err != nil {
		t.Fatal(err)
	}
	for _, lock := range []string{"o3.lock", "greeting.lock"} {
		os.Remove(filepath.Join(dir, "hello", lock))
	}
}

func FuzzParseLock(f *testing.F) {
	f.Add(testLock().Encode())
	f.Add([]byte(`{"type":"lebowski.lock/v1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLock(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if _, err := ParseLock(l.Encode()); err != nil {
			t.Fatalf("re-encoded lock does not parse: %v", err)
		}
	})
}
