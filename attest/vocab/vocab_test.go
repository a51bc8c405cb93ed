package vocab

import (
	"errors"
	"strings"
	"testing"

	"pault.ag/go/debian/version"
)

func TestWords(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		desc  string
		check func(string) error
		in    string
		ok    bool
	}{
		{"package: plain", CheckPackage, "hello", true},
		{"package: plus dot hyphen", CheckPackage, "libc6.1-dev+x", true},
		{"package: starts with digit", CheckPackage, "0ad", true},
		{"package: one char", CheckPackage, "a", false},
		{"package: upper case", CheckPackage, "Hello", false},
		{"package: starts with hyphen", CheckPackage, "-hello", false},
		{"package: underscore", CheckPackage, "hello_world", false},
		{"package: slash", CheckPackage, "hello/o3", false},
		{"package: max length", CheckPackage, long(MaxPackageLen), true},
		{"package: too long", CheckPackage, long(MaxPackageLen + 1), false},
		{"suite: codename", CheckSuite, "bookworm", true},
		{"suite: updates", CheckSuite, "bookworm-updates", true},
		{"suite: proposed updates", CheckSuite, "bookworm-proposed-updates", true},
		{"suite: old security layout", CheckSuite, "bookworm/updates", false},
		{"suite: trailing hyphen", CheckSuite, "bookworm-", false},
		{"suite: starts with digit", CheckSuite, "12", false},
		{"suite: upper case", CheckSuite, "Bookworm", false},
		{"arch: amd64", CheckArch, "amd64", true},
		{"arch: hurd-i386", CheckArch, "hurd-i386", true},
		{"arch: all", CheckArch, "all", true},
		{"arch: empty", CheckArch, "", false},
		{"arch: space", CheckArch, "amd 64", false},
		{"version: simple", CheckVersion, "2.10-3", true},
		{"version: native", CheckVersion, "1.0", true},
		{"version: epoch", CheckVersion, "1:2.0-1", true},
		{"version: epoch and colon in upstream", CheckVersion, "1:2.0:3-1", true},
		{"version: colon without epoch", CheckVersion, "2.0:3-1", false},
		{"version: tilde", CheckVersion, "1.0~rc1-2", true},
		{"version: hyphen in upstream", CheckVersion, "1.0-beta-2", true},
		{"version: security suffix", CheckVersion, "2.36-9+deb12u4", true},
		{"version: opinion build", CheckVersion, "2.10-3~o3+1", true},
		{"version: empty revision", CheckVersion, "2.10-", false},
		{"version: empty epoch", CheckVersion, ":1.0", false},
		{"version: letter epoch", CheckVersion, "a:1.0", false},
		{"version: upstream starts with letter", CheckVersion, "abc-1", false},
		{"version: underscore", CheckVersion, "1.0_1-1", false},
		{"version: space", CheckVersion, "1.0 1", false},
		{"version: colon in revision", CheckVersion, "1:1.0-1:2", false},
		{"version: too long", CheckVersion, "1" + long(MaxVersionLen), false},
		{"opinion: o3", CheckOpinionName, "o3", true},
		{"opinion: digits", CheckOpinionName, "3", true},
		{"opinion: hyphen", CheckOpinionName, "no-nls", false},
		{"opinion: upper case", CheckOpinionName, "O3", false},
		{"opinion: vanilla", CheckOpinionName, "vanilla", false},
		{"opinion: backports lookalike", CheckOpinionName, "bpo12", false},
		{"opinion: stable update lookalike", CheckOpinionName, "deb12u1", false},
		{"opinion: deb12", CheckOpinionName, "deb12", false},
		{"opinion: debug is fine", CheckOpinionName, "debug", true},
		{"opinion: bpo alone is fine", CheckOpinionName, "bpo", true},
		{"opinion: max length", CheckOpinionName, long(MaxOpinionNameLen), true},
		{"opinion: too long", CheckOpinionName, long(MaxOpinionNameLen + 1), false},
		{"fingerprint: v4", CheckFingerprint, strings.Repeat("AB", 20), true},
		{"fingerprint: v6", CheckFingerprint, strings.Repeat("0F", 32), true},
		{"fingerprint: lower case", CheckFingerprint, strings.Repeat("ab", 20), false},
		{"fingerprint: short", CheckFingerprint, "ABCD", false},
		{"file: deb", CheckFileName, "hello_2.10-3~o3+1_amd64.deb", true},
		{"file: dotdot", CheckFileName, "..", false},
		{"file: slash", CheckFileName, "a/b.deb", false},
		{"file: hidden", CheckFileName, ".hidden", false},
		{"file: too long", CheckFileName, long(MaxFileNameLen + 1), false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.check(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("%q: err = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: %v does not wrap ErrInvalid", tc.in, err)
			}
		})
	}
}

func TestBinaryVersion(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want BinaryVersion
		ok   bool
	}{
		{"opinion build", "2.10-3~o3+1", BinaryVersion{"2.10-3", "o3", 1}, true},
		{"epoch", "1:2.0-1~fast+12", BinaryVersion{"1:2.0-1", "fast", 12}, true},
		{"tilde in the Debian version", "1.0~rc1-2~o3+1", BinaryVersion{"1.0~rc1-2", "o3", 1}, true},
		{"security update underneath", "2.36-9+deb12u4~o3+2", BinaryVersion{"2.36-9+deb12u4", "o3", 2}, true},
		{"plain Debian version", "2.10-3", BinaryVersion{}, false},
		{"backport is not an opinion", "1.0-1~bpo12+1", BinaryVersion{}, false},
		{"stable update is not an opinion", "1.0-1~deb12u1", BinaryVersion{}, false},
		{"hyphenated name", "2.10-3~no-nls+1", BinaryVersion{}, false},
		{"revision zero", "2.10-3~o3+0", BinaryVersion{}, false},
		{"leading zero revision", "2.10-3~o3+01", BinaryVersion{}, false},
		{"revision too big", "2.10-3~o3+1000000", BinaryVersion{}, false},
		{"no Debian version", "~o3+1", BinaryVersion{}, false},
		{"vanilla name", "2.10-3~vanilla+1", BinaryVersion{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, ok := ParseBinaryVersion(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("ParseBinaryVersion(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			if ok && got.String() != tc.in {
				t.Fatalf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
	// The '~' keeps an opinion build just below Debian's own.
	b := BinaryVersion{"2.10-3", "o3", 1}
	deb, _ := version.Parse("2.10-3")
	bin, err := version.Parse(b.String())
	if err != nil || version.Compare(bin, deb) >= 0 {
		t.Fatalf("%s does not sort below 2.10-3 (%v)", b, err)
	}
}

func TestRef(t *testing.T) {
	tests := []struct {
		in   string
		want Ref
		str  string
		ok   bool
	}{
		{"hello/o3", Ref{"hello", "o3"}, "hello/o3", true},
		{"hello/vanilla", Ref{"hello", ""}, "hello/vanilla", true},
		{"hello", Ref{"hello", ""}, "hello/vanilla", true},
		{"hello/", Ref{}, "", false},
		{"hello/no-nls", Ref{}, "", false},
		{"Hello/o3", Ref{}, "", false},
		{"/o3", Ref{}, "", false},
		{"hello/o3/x", Ref{}, "", false},
	}
	for _, tc := range tests {
		got, err := ParseRef(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Fatalf("ParseRef(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.str {
			t.Fatalf("%q: String() = %q, want %q", tc.in, got.String(), tc.str)
		}
	}
}

func TestPurity(t *testing.T) {
	for i, p := range []Purity{PurityPureCompilation, PurityConfigureOnly, PurityPatches, "lies"} {
		if p.Rank() != i {
			t.Fatalf("%s: rank %d, want %d", p, p.Rank(), i)
		}
		if p.Valid() != (i < 3) {
			t.Fatalf("%s: Valid = %v", p, p.Valid())
		}
	}
}

// FuzzVersion holds CheckVersion to dpkg's grammar as implemented by
// pault.ag/go/debian/version, and ParseBinaryVersion to its inverse.
func FuzzVersion(f *testing.F) {
	for _, s := range []string{"2.10-3", "1:2.0-1", "2.10-3~o3+1", "1.0-1~bpo12+1", "1.0~rc1", "a:b-c", "1-", "0:0-0~0+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckVersion(s) == nil {
			if _, err := version.Parse(s); err != nil {
				t.Fatalf("CheckVersion accepts %q but dpkg's grammar does not: %v", s, err)
			}
		}
		if b, ok := ParseBinaryVersion(s); ok {
			if b.String() != s {
				t.Fatalf("ParseBinaryVersion(%q).String() = %q", s, b.String())
			}
			if err := b.Check(); err != nil {
				t.Fatalf("ParseBinaryVersion(%q) gave %+v failing Check: %v", s, b, err)
			}
		}
		if r, err := ParseRef(s); err == nil {
			if again, err := ParseRef(r.String()); err != nil || again != r {
				t.Fatalf("ParseRef(%q) = %+v; again from %q = %+v, %v", s, r, r.String(), again, err)
			}
		}
	})
}

func TestCID(t *testing.T) {
	data := []byte("hello")
	c := CID(data)
	if !strings.HasPrefix(c, "bafkrei") {
		t.Fatalf("CID = %q, want a raw sha2-256 CIDv1", c)
	}
	sum, err := ParseCID(c)
	if err != nil || CIDOfSHA256(sum) != c {
		t.Fatalf("ParseCID(%q) = %x, %v", c, sum, err)
	}
	h := "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" // sha256("hello")
	if got, err := CIDOfSHA256Hex(h); err != nil || got != c {
		t.Fatalf("CIDOfSHA256Hex = %q, %v; want %q", got, err, c)
	}
	for _, bad := range []string{"", "bafy", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", strings.Repeat("b", 200),
		"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", strings.ToUpper(c)} {
		if _, err := ParseCID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseCID(%q): err = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := CIDOfSHA256Hex("xyz"); err == nil {
		t.Fatal("CIDOfSHA256Hex accepted a bad hash")
	}
}

func FuzzParseCID(f *testing.F) {
	f.Add(CID([]byte("x")))
	f.Add("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")
	f.Fuzz(func(t *testing.T, s string) {
		if sum, err := ParseCID(s); err == nil && CIDOfSHA256(sum) != s {
			t.Fatalf("ParseCID(%q) accepted a non-canonical form", s)
		}
	})
}
