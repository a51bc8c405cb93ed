package debfile_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lebowski-dist/lebowski/builder/debfile"
	"github.com/lebowski-dist/lebowski/builder/debfile/debfiletest"
)

func TestInspectGood(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		pkg                             debfiletest.Package
		source, debian, opinion, fileNm string
	}{
		{debfiletest.Package{Name: "hello", Version: "2.10-3~o3+1"}, "hello", "2.10-3", "o3", "hello_2.10-3~o3+1_amd64.deb"},
		{debfiletest.Package{Name: "libexpat1", Version: "2.5.0-1", Source: "expat"}, "expat", "2.5.0-1", "", "libexpat1_2.5.0-1_amd64.deb"},
		{debfiletest.Package{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Source: "zlib (1:1.2.13.dfsg-1)"}, "zlib", "1:1.2.13.dfsg-1", "", "zlib1g_1.2.13.dfsg-1_amd64.deb"},
		{debfiletest.Package{Name: "tzdata", Version: "2024a-0+deb12u1", Arch: "all"}, "tzdata", "2024a-0+deb12u1", "", "tzdata_2024a-0+deb12u1_all.deb"},
	} {
		p := debfiletest.Build(t, dir, tc.pkg)
		info, err := debfile.Open(context.Background(), p)
		if err != nil {
			t.Fatalf("%s: %v", tc.pkg.Name, err)
		}
		if info.Source != tc.source || info.DebianVersion != tc.debian || info.Opinion != tc.opinion || info.FileName() != tc.fileNm || info.Package != tc.pkg.Name {
			t.Errorf("%s: got %+v (file %s)", tc.pkg.Name, info, info.FileName())
		}
	}
}

// Every damaged copy of a real .deb is a DamageError that names the
// damaged member.
func TestInspectDamaged(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(debfiletest.Build(t, dir, debfiletest.Package{Name: "hello", Version: "2.10-3~o3+1"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(debfiletest.Members(t, good)) != 3 {
		t.Fatalf("dpkg-deb made %d members", len(debfiletest.Members(t, good)))
	}
	for _, d := range debfiletest.Damages(t, good) {
		t.Run(d.Name, func(t *testing.T) {
			_, err := debfile.Inspect(context.Background(), bytes.NewReader(d.Data), int64(len(d.Data)))
			if !debfile.IsDamaged(err) {
				t.Fatalf("got %v, want a DamageError", err)
			}
			if d.Member != "" && !strings.Contains(err.Error(), d.Member) {
				t.Errorf("%q does not name member %s", err, d.Member)
			}
			t.Log(err)
		})
	}
}

func TestOpenPathErrors(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{filepath.Join(dir, "missing.deb"), dir} {
		_, err := debfile.Open(context.Background(), p)
		if err == nil || debfile.IsDamaged(err) {
			t.Errorf("%s: got %v, want a path error", p, err)
		}
	}
}

func FuzzInspect(f *testing.F) {
	good, err := os.ReadFile(debfiletest.Build(f, f.TempDir(), debfiletest.Package{Name: "hello", Version: "2.10-3"}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, d := range debfiletest.Damages(f, good) {
		f.Add(d.Data)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := debfile.Inspect(context.Background(), bytes.NewReader(b), int64(len(b)))
		if err == nil && (info.Package == "" || info.Version == "" || info.Architecture == "") {
			t.Fatalf("accepted without fields: %+v", info)
		}
	})
}
