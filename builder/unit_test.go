package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/opinions"
)

func baseOpinion(t *testing.T) *opinions.Opinion {
	return &opinions.Opinion{
		Name: "o3", Package: "hello", Summary: "hello -O3", Purity: vocab.PurityPureCompilation,
		Debian: opinions.Debian{Suite: "bookworm", Version: "2.10-3"}, Revision: 2, Dir: t.TempDir(),
	}
}

func TestCheckOpinionFlags(t *testing.T) {
	tests := []struct {
		desc    string
		mut     func(o *opinions.Opinion)
		wantErr bool
		want    string // substring of the error
	}{
		{"plain -O3 accepted", func(o *opinions.Opinion) { o.Build.CFlags.Append = []string{"-O3", "-march=x86-64-v2"} }, false, ""},
		{"linker flags with commas accepted", func(o *opinions.Opinion) { o.Build.LDFlags.Append = []string{"-Wl,-z,now"} }, false, ""},
		{"command substitution refused", func(o *opinions.Opinion) { o.Build.CFlags.Append = []string{"-O2 $(id)"} }, true, "build.cflags.append[0]"},
		{"semicolon refused", func(o *opinions.Opinion) { o.Build.CXXFlags.Append = []string{"-O2;reboot"} }, true, "build.cxxflags.append[0]"},
		{"backtick refused", func(o *opinions.Opinion) { o.Build.LDFlags.Append = []string{"`id`"} }, true, "ldflags"},
		{"space refused", func(o *opinions.Opinion) { o.Build.CFlags.Append = []string{"-O2 -g"} }, true, "cflags"},
		{"newline refused", func(o *opinions.Opinion) { o.Build.CFlags.Append = []string{"-O2\n-g"} }, true, "cflags"},
		{"dollar in configure arg refused", func(o *opinions.Opinion) { o.Build.ConfigureArgs = []string{"--with-x=$HOME"} }, true, "configure_args"},
		{"make comment refused", func(o *opinions.Opinion) { o.Build.ConfigureArgs = []string{"--with-x#"} }, true, "configure_args"},
		{"response file refused", func(o *opinions.Opinion) { o.Build.CFlags.Append = []string{"@/etc/passwd"} }, true, "cflags"},
		{"configure arg accepted", func(o *opinions.Opinion) { o.Build.ConfigureArgs = []string{"--disable-nls"} }, false, ""},
		{"nocheck accepted", func(o *opinions.Opinion) { o.Build.BuildOptions = []string{"nocheck"} }, false, ""},
		{"hardening list accepted", func(o *opinions.Opinion) { o.Build.BuildOptions = []string{"hardening=+all,-pie"} }, false, ""},
		{"parallel refused", func(o *opinions.Opinion) { o.Build.BuildOptions = []string{"parallel=8"} }, true, "parallel is fixed"},
		{"unknown hardening feature refused", func(o *opinions.Opinion) { o.Build.BuildOptions = []string{"hardening=+evil"} }, true, "not allow-listed"},
		{"wrong package refused", func(o *opinions.Opinion) { o.Package = "bash" }, true, "not \"hello\""},
		{"wrong version refused", func(o *opinions.Opinion) { o.Debian.Version = "2.10-2" }, true, "applies to hello 2.10-2"},
		{"wrong suite refused", func(o *opinions.Opinion) { o.Debian.Suite = "trixie" }, true, "for suite trixie"},
		{"bad name refused", func(o *opinions.Opinion) { o.Name = "o-3" }, true, "opinion name"},
		{"too many flags refused", func(o *opinions.Opinion) { o.Build.CFlags.Append = make([]string, maxFlags+1) }, true, "max"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			o := baseOpinion(t)
			tc.mut(o)
			a, err := checkOpinion(o, "hello", "2.10-3", "bookworm")
			if tc.wantErr {
				require.ErrorIs(t, err, ErrUnsafeOpinion)
				assert.Contains(t, err.Error(), tc.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "2.10-3~o3+2", a.binaryVersion)
			assert.Equal(t, o.CID(), a.cid)
		})
	}
}

func TestCheckOpinionPatches(t *testing.T) {
	data := []byte("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
	sum := sha256.Sum256(data)
	good := hex.EncodeToString(sum[:])
	tests := []struct {
		desc  string
		setup func(t *testing.T, dir string) opinions.Patch
		want  string // "" = accepted
	}{
		{"good patch", func(t *testing.T, dir string) opinions.Patch {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "fix.patch"), data, 0o644))
			return opinions.Patch{Path: "fix.patch", SHA256: good}
		}, ""},
		{"wrong sha256", func(t *testing.T, dir string) opinions.Patch {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "fix.patch"), data, 0o644))
			return opinions.Patch{Path: "fix.patch", SHA256: strings.Repeat("0", 64)}
		}, "the opinion says"},
		{"dot-dot path", func(t *testing.T, dir string) opinions.Patch {
			return opinions.Patch{Path: "../fix.patch", SHA256: good}
		}, "plain relative path"},
		{"absolute path", func(t *testing.T, dir string) opinions.Patch {
			return opinions.Patch{Path: "/etc/passwd", SHA256: good}
		}, "plain relative path"},
		{"symlink out of the dir", func(t *testing.T, dir string) opinions.Patch {
			outside := filepath.Join(t.TempDir(), "x.patch")
			require.NoError(t, os.WriteFile(outside, data, 0o644))
			require.NoError(t, os.Symlink(outside, filepath.Join(dir, "link.patch")))
			return opinions.Patch{Path: "link.patch", SHA256: good}
		}, "outside the opinion directory"},
		{"missing file", func(t *testing.T, dir string) opinions.Patch {
			return opinions.Patch{Path: "nope.patch", SHA256: good}
		}, "nope.patch"},
		{"directory", func(t *testing.T, dir string) opinions.Patch {
			require.NoError(t, os.Mkdir(filepath.Join(dir, "d.patch"), 0o755))
			return opinions.Patch{Path: "d.patch", SHA256: good}
		}, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			o := baseOpinion(t)
			o.Purity = vocab.PurityPatches
			o.Patches = []opinions.Patch{tc.setup(t, o.Dir)}
			a, err := checkOpinion(o, "hello", "2.10-3", "bookworm")
			if tc.want != "" {
				require.ErrorIs(t, err, ErrUnsafeOpinion)
				assert.Contains(t, err.Error(), tc.want)
				return
			}
			require.NoError(t, err)
			require.Len(t, a.patches, 1)
			assert.Equal(t, "lebowski-01-fix.patch", a.patches[0].name)
			assert.Equal(t, data, a.patches[0].data)
		})
	}
}

func TestChangelogEntry(t *testing.T) {
	tests := []struct {
		desc  string
		lines []string
		want  string
	}{
		{"one line", []string{"Rebuilt with -O3"},
			"hello (2.10-3~o3+1) bookworm; urgency=medium\n\n  * Rebuilt with -O3\n\n -- Lebowski <opinions@lebowski.invalid>  Sat, 10 Jun 2023 00:00:00 +0000\n"},
		{"newline in text is folded (no field injection)", []string{"a\n -- Evil <e@x>  date\nb"},
			"hello (2.10-3~o3+1) bookworm; urgency=medium\n\n  * a -- Evil <e@x> date b\n\n -- Lebowski <opinions@lebowski.invalid>  Sat, 10 Jun 2023 00:00:00 +0000\n"},
	}
	date := time.Unix(DefaultImageEpoch, 0).UTC().Format(time.RFC1123Z)
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := ChangelogEntry("hello", "2.10-3~o3+1", "bookworm", tc.lines, date)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestChangelogEntryParses checks the entry with dpkg-parsechangelog (a
// dpkg-dev host tool) when it is installed.
func TestChangelogEntryParses(t *testing.T) {
	if _, err := exec.LookPath("dpkg-parsechangelog"); err != nil {
		t.Skip("dpkg-parsechangelog not installed")
	}
	o := baseOpinion(t)
	a, err := checkOpinion(o, "hello", "2.10-3", "bookworm")
	require.NoError(t, err)
	entry := ChangelogEntry("hello", a.binaryVersion, "bookworm", a.changelogLines(), "Sat, 10 Jun 2023 00:00:00 +0000")
	old := "hello (2.10-3) unstable; urgency=medium\n\n  * x\n\n -- Someone <s@example.org>  Sun, 14 Aug 2022 10:00:00 +0200\n"
	path := filepath.Join(t.TempDir(), "changelog")
	require.NoError(t, os.WriteFile(path, []byte(entry+"\n"+old), 0o644))
	for field, want := range map[string]string{
		"Version": "2.10-3~o3+2", "Distribution": "bookworm", "Urgency": "medium",
		"Maintainer": ChangelogMaintainer, "Timestamp": "1686355200",
	} {
		out, err := exec.Command("dpkg-parsechangelog", "-l", path, "-S", field).CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Equal(t, want, strings.TrimSpace(string(out)), field)
	}
}

func TestBuildScript(t *testing.T) {
	tests := []struct {
		desc    string
		mut     func(o *opinions.Opinion)
		vanilla bool
		has     []string
		hasNot  []string
	}{
		{"vanilla", nil, true,
			[]string{"dpkg-source -x /build/src/hello_2.10-3.dsc /build/hello-2.10-3\n", "dpkg-buildpackage -b -uc -us\n", "umask 0022\n", "set -eu\n"},
			[]string{"stage changelog", "override_dh_auto_configure", "stage patches"}},
		{"configure args", func(o *opinions.Opinion) { o.Build.ConfigureArgs = []string{"--disable-nls", "--without-x"} }, false,
			[]string{"override_dh_auto_configure:", "'--disable-nls --without-x' >>debian/rules", "stage changelog"}, nil},
		{"patch is checked before it joins the series", func(o *opinions.Opinion) {
			data := []byte("--- a/x\n+++ b/x\n")
			require.NoError(t, os.WriteFile(filepath.Join(o.Dir, "fix.patch"), data, 0o644))
			sum := sha256.Sum256(data)
			o.Patches = []opinions.Patch{{Path: "fix.patch", SHA256: hex.EncodeToString(sum[:])}}
		}, false,
			[]string{"patch -p1 -N -f -s --dry-run </build/lebowski/patches/lebowski-01-fix.patch >/dev/null || refuse", "grep -qxF 'lebowski-01-fix.patch' .pc/applied-patches || refuse"}, nil},
		{"flags are not in the script", func(o *opinions.Opinion) { o.Build.CFlags.Append = []string{"-O3"} }, false,
			[]string{"stage changelog"}, []string{"-O3"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var a *appliedOpinion
			if !tc.vanilla {
				o := baseOpinion(t)
				if tc.mut != nil {
					tc.mut(o)
				}
				var err error
				a, err = checkOpinion(o, "hello", "2.10-3", "bookworm")
				require.NoError(t, err)
			}
			s := buildScript(scriptParams{dscName: "hello_2.10-3.dsc", srcDir: srcTreePath("hello", "2.10-3"), opinion: a, pkg: "hello", suite: "bookworm"})
			for _, h := range tc.has {
				assert.Contains(t, s, h)
			}
			if i, j := strings.Index(s, "--dry-run"), strings.Index(s, ">>debian/patches/series"); j >= 0 {
				assert.Less(t, i, j, "dry-run must come before the series append")
				assert.GreaterOrEqual(t, i, 0)
			}
			for _, h := range tc.hasNot {
				assert.NotContains(t, s, h)
			}
			if sh, err := exec.LookPath("sh"); err == nil {
				out, err := exec.Command(sh, "-n", "-c", s).CombinedOutput()
				assert.NoError(t, err, "script does not parse: %s", out)
			}
		})
	}
}

func TestBuildEnv(t *testing.T) {
	epoch := int64(1700000000)
	o := baseOpinion(t)
	o.Build.CFlags.Append = []string{"-O3", "-g1"}
	o.Build.LDFlags.Append = []string{"-Wl,-O1"}
	o.Build.BuildOptions = []string{"nocheck"}
	o.SourceDateEpoch = &epoch
	a, err := checkOpinion(o, "hello", "2.10-3", "bookworm")
	require.NoError(t, err)
	env := buildEnv(a)
	assert.Equal(t, "-O3 -g1", env["DEB_CFLAGS_APPEND"])
	assert.Equal(t, "-Wl,-O1", env["DEB_LDFLAGS_APPEND"])
	assert.NotContains(t, env, "DEB_CXXFLAGS_APPEND")
	assert.NotContains(t, env, "DEB_CFLAGS_MAINT_APPEND")
	assert.Equal(t, "parallel=1 nocheck", env["DEB_BUILD_OPTIONS"])
	assert.Equal(t, "1700000000", env["SOURCE_DATE_EPOCH"])
	assert.Equal(t, "UTC", env["TZ"])
	van := buildEnv(nil)
	assert.Equal(t, "parallel=1", van["DEB_BUILD_OPTIONS"])
	assert.NotContains(t, van, "SOURCE_DATE_EPOCH")
}

func TestExtendBuildinfo(t *testing.T) {
	fields := [][2]string{{"X-Lebowski-Opinion", "o3 bafyabc"}, {"X-Lebowski-Image", "sha256:" + strings.Repeat("a", 64)}}
	tests := []struct {
		desc string
		in   string
		want string // "" = error
	}{
		{"appends to the paragraph", "Format: 1.0\nSource: hello\nChecksums-Sha256:\n abc 1 hello.deb\n",
			"Format: 1.0\nSource: hello\nChecksums-Sha256:\n abc 1 hello.deb\nX-Lebowski-Opinion: o3 bafyabc\nX-Lebowski-Image: sha256:" + strings.Repeat("a", 64) + "\n"},
		{"trailing blank lines dropped", "Format: 1.0\n\n\n", "Format: 1.0\nX-Lebowski-Opinion: o3 bafyabc\nX-Lebowski-Image: sha256:" + strings.Repeat("a", 64) + "\n"},
		{"signed refused", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nFormat: 1.0\n", ""},
		{"two paragraphs refused", "Format: 1.0\n\nOther: x\n", ""},
		{"empty refused", "\n\n", ""},
		{"field already present refused", "Format: 1.0\nX-Lebowski-Image: x\n", ""},
		{"not deb822 refused", "hello world\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ExtendBuildinfo([]byte(tc.in), fields)
			if tc.want == "" {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
		})
	}
	_, err := ExtendBuildinfo([]byte("Format: 1.0\n"), [][2]string{{"X-A", "b\nEvil: yes"}})
	require.Error(t, err, "newline in a value must be refused")
}

func FuzzExtendBuildinfo(f *testing.F) {
	f.Add([]byte("Format: 1.0\nSource: hello\n"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\n"))
	f.Add([]byte("a:\n\nb: c"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := ExtendBuildinfo(b, [][2]string{{"X-Lebowski-Image", "sha256:x"}})
		if err != nil {
			return
		}
		if !strings.HasSuffix(string(out), "\nX-Lebowski-Image: sha256:x\n") {
			t.Fatalf("field not appended last: %q", out)
		}
		if strings.Contains(string(out), "\n\n") {
			t.Fatalf("output has more than one paragraph: %q", out)
		}
	})
}

func TestResolveBuildDepends(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want []string
	}{
		{"hello", "debhelper-compat (= 13), help2man, texinfo", []string{"debhelper-compat", "help2man", "texinfo"}},
		{"first alternative", "libfoo-dev | libbar-dev, pkg-config", []string{"libfoo-dev", "pkg-config"}},
		{"arch restriction skips alternative", "libseccomp-dev [!hurd-any !kfreebsd-any] | dummy, libcap-dev [linux-any], libx [armel]",
			[]string{"libcap-dev", "libseccomp-dev"}},
		{"other-arch first alternative falls through", "gcc-multilib [i386] | gcc", []string{"gcc"}},
		{"profiles", "python3 <!nocheck>, doxygen <!nodoc>, bootstrap-only <stage1>", []string{"doxygen", "python3"}},
		{"multiarch qualifier", "python3:any, perl:native (>= 5)", []string{"perl", "python3"}},
		{"duplicates and versions", "debhelper (>= 10~), debhelper (>= 12)", []string{"debhelper"}},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ResolveBuildDepends([]string{tc.in}, "amd64")
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := ResolveBuildDepends([]string{"foo (>= "}, "amd64")
	require.Error(t, err)
}

func FuzzResolveBuildDepends(f *testing.F) {
	f.Add("debhelper-compat (= 13), help2man, texinfo")
	f.Add("a | b [!amd64] <!nocheck>, c:any")
	f.Add("${misc:Depends}")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ResolveBuildDepends([]string{s}, "amd64")
		if err != nil {
			return
		}
		for _, p := range got {
			if !vocab.IsPackage(p) {
				t.Fatalf("resolved %q is not a package name", p)
			}
		}
	})
}

func TestParseDpkgStatus(t *testing.T) {
	status := "Package: bb\nStatus: install ok installed\nVersion: 1:2.0-1\nDescription: x\n continued: line\n\n" +
		"Package: aa\nStatus: deinstall ok config-files\nVersion: 1\n\n" +
		"Package: cc\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3~rc1\n"
	got, err := ParseDpkgStatus([]byte(status))
	require.NoError(t, err)
	assert.Equal(t, []string{"bb (= 1:2.0-1)", "cc (= 3~rc1)"}, got)
	_, err = ParseDpkgStatus([]byte("Package: x\nStatus: install ok installed\nVersion: 1 ;rm\n"))
	require.ErrorIs(t, err, ErrImage)
	_, err = ParseDpkgStatus([]byte("garbage line\n"))
	require.ErrorIs(t, err, ErrImage)
}

func FuzzParseDpkgStatus(f *testing.F) {
	f.Add([]byte("Package: b\nStatus: install ok installed\nVersion: 1\n"))
	f.Add([]byte("\n\n\nPackage:\n"))
	f.Add([]byte("Package: a\r\nVersion: 1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseDpkgStatus(b)
		if err != nil {
			return
		}
		for _, l := range got {
			if strings.ContainsAny(l, "\n\r") || !strings.Contains(l, " (= ") {
				t.Fatalf("bad entry %q", l)
			}
		}
	})
}

func TestManifest(t *testing.T) {
	a := NewManifest("bookworm", "hello", []string{"texinfo", "help2man", "debhelper"})
	b := NewManifest("bookworm", "other", []string{"help2man", "texinfo"})
	assert.Equal(t, a.Hash(), b.Hash(), "name and order must not change the hash")
	c := NewManifest("bookworm", "hello", []string{"help2man"})
	assert.NotEqual(t, a.Hash(), c.Hash())
	d := a
	d.SourceDateEpoch++
	assert.NotEqual(t, a.Hash(), d.Hash())
	require.NoError(t, a.Validate())
	tests := []struct {
		desc string
		mut  func(m *Manifest)
	}{
		{"option-looking package", func(m *Manifest) { m.Packages = append(m.Packages, "--foo") }},
		{"shell in mirror", func(m *Manifest) { m.Mirror = "http://x/ ; rm -rf /" }},
		{"file mirror", func(m *Manifest) { m.Mirror = "file:///etc" }},
		{"bad suite", func(m *Manifest) { m.Suite = "../x" }},
		{"no epoch", func(m *Manifest) { m.SourceDateEpoch = 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			m := NewManifest("bookworm", "x", nil)
			tc.mut(&m)
			require.ErrorIs(t, m.Validate(), ErrImage)
		})
	}
	args := a.mmdebstrapArgs("/out.tar")
	assert.Contains(t, args, "--include=build-essential,debhelper,dh-strip-nondeterminism,dpkg-dev,fakeroot,help2man,quilt,strip-nondeterminism,texinfo")
}

// Fakes for the builder seams: prove that refusals happen before any
// container is created.

type fakeSource struct{ src *source.Source }

func (f fakeSource) Fetch(ctx context.Context, suite, pkg, version string) (*source.Source, error) {
	return f.src, nil
}

func (f fakeSource) FetchPinnedSource(ctx context.Context, ps source.PinnedSource, snapshot string) (*source.Source, error) {
	if ps.Dsc.SHA256 != f.src.DscSHA256 {
		return nil, &source.UnavailableError{File: source.Pinned{Name: ps.Dsc.Name, SHA256: ps.Dsc.SHA256}, Tried: []string{"mirror: 404"}}
	}
	return f.src, nil
}

func (f fakeSource) FetchPinned(ctx context.Context, p source.Pinned, snapshot string, limit int64) (string, string, error) {
	return "", "", &source.UnavailableError{File: p, Tried: []string{"mirror: 404"}}
}

func (f fakeSource) ResolveBinaries(ctx context.Context, suite, arch string, want []source.Installed) (*source.Resolved, error) {
	r := &source.Resolved{MirrorDate: time.Date(2026, 7, 11, 10, 0, 0, 0, time.UTC)}
	for _, w := range want {
		r.Packages = append(r.Packages, source.BinaryPackage{Name: w.Name, Version: w.Version, Arch: w.Arch,
			Filename: "pool/main/x/" + w.Name + "/" + w.Name + "_" + w.Version + "_" + w.Arch + ".deb", Size: 1, SHA256: strings.Repeat("d", 64)})
	}
	return r, nil
}

type fakeImages struct{ calls, discovered int }

func (f *fakeImages) EnsureLocked(ctx context.Context, l *opinions.Lock, fetch FetchDeb) (*Image, error) {
	f.calls++
	return &Image{LockKey: l.ImageKey(), Digest: "sha256:" + strings.Repeat("b", 64), Ref: "localhost/lebowski/fake:1"}, nil
}

func (f *fakeImages) Discover(ctx context.Context, m Manifest, fresh bool) ([]source.Installed, error) {
	f.discovered++
	var out []source.Installed
	for _, p := range m.Packages {
		out = append(out, source.Installed{Name: p, Version: "1.0-1", Arch: "amd64"})
	}
	return out, nil
}

type fakeRunner struct {
	calls int
	last  RunSpec
	run   func(rs RunSpec) RunResult
}

func (f *fakeRunner) Run(ctx context.Context, rs RunSpec) (RunResult, error) {
	f.calls++
	f.last = rs
	if f.run != nil {
		return f.run(rs), nil
	}
	return RunResult{ExitCode: 2}, nil
}

func fakeBuilder(t *testing.T) (*PodmanBuilder, *fakeImages, *fakeRunner) {
	dir := t.TempDir()
	srcDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(srcDir, "hello_2.10-3.dsc"), []byte("Format: 3.0 (quilt)\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(srcDir, "hello_2.10.orig.tar.gz"), []byte("x"), 0o644))
	src := &source.Source{Package: "hello", Version: "2.10-3", Suite: "bookworm", DscName: "hello_2.10-3.dsc", DscSize: 20,
		DscSHA256: strings.Repeat("c", 64), Dir: srcDir, Directory: "pool/main/h/hello", Files: []source.File{{Name: "hello_2.10.orig.tar.gz", Size: 1, SHA256: strings.Repeat("e", 64)}},
		BuildDepends: "debhelper-compat (= 13), help2man, texinfo", Format: "3.0 (quilt)"}
	imgs := &fakeImages{}
	run := &fakeRunner{}
	b, err := New(dir, fakeSource{src}, nil, WithImages(imgs), WithRunner(run))
	require.NoError(t, err)
	return b, imgs, run
}

func TestBuildRefusesBeforeContainer(t *testing.T) {
	for _, flag := range []string{"-O2 $(touch /tmp/x)", "-O2;reboot", "-O2 && id", "-O2|cat"} {
		t.Run(flag, func(t *testing.T) {
			b, imgs, run := fakeBuilder(t)
			o := baseOpinion(t)
			o.Build.CFlags.Append = []string{flag}
			res, err := b.Build(context.Background(), Request{Package: "hello", Opinion: o})
			require.ErrorIs(t, err, ErrUnsafeOpinion)
			assert.Nil(t, res)
			assert.Equal(t, 0, run.calls, "a container was run")
			assert.Equal(t, 0, imgs.calls, "an image was made")
		})
	}
}

func TestBuildRequestValidation(t *testing.T) {
	tests := []struct {
		desc string
		req  Request
	}{
		{"no package", Request{}},
		{"bad package", Request{Package: "../etc"}},
		{"bad version", Request{Package: "hello", Version: "1 2"}},
		{"foreign arch", Request{Package: "hello", Arch: "arm64"}},
		{"bad suite", Request{Package: "hello", Suite: "Bookworm!"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			b, _, run := fakeBuilder(t)
			_, err := b.Build(context.Background(), tc.req)
			require.ErrorIs(t, err, ErrInvalidRequest)
			assert.Zero(t, run.calls)
		})
	}
}

func TestBuildFailedIsResult(t *testing.T) {
	b, _, run := fakeBuilder(t)
	run.run = func(rs RunSpec) RunResult {
		_ = os.WriteFile(filepath.Join(rs.HostDir, "build.log"), []byte("make: *** [all] Error 2\n"), 0o644)
		_ = os.WriteFile(filepath.Join(rs.HostDir, stageFile), []byte("build\n"), 0o644)
		return RunResult{ExitCode: 2}
	}
	o := baseOpinion(t)
	o.Build.CFlags.Append = []string{"-O3"}
	res, err := b.Build(context.Background(), Request{Package: "hello", Opinion: o})
	require.NoError(t, err)
	assert.Equal(t, attest.ResultFailed, res.Status)
	assert.Contains(t, res.FailReason, "stage build failed with exit code 2")
	assert.Contains(t, string(res.Log), "Error 2")
	assert.Equal(t, o.CID(), res.Recipe.OpinionCID)
	assert.Equal(t, "2.10-3~o3+2", res.BinaryVersion)
	// The sandbox settings reach the runner.
	assert.Equal(t, "/build", run.last.MountAt)
	assert.Equal(t, "-O3", run.last.Env["DEB_CFLAGS_APPEND"])
	assert.Equal(t, []string{"/bin/sh", containerScript}, run.last.Command)
	assert.Positive(t, run.last.Memory)
	assert.Positive(t, run.last.Pids)
	assert.Positive(t, run.last.Timeout)
}

func TestBuildTimeoutAndRefusal(t *testing.T) {
	b, _, run := fakeBuilder(t)
	run.run = func(rs RunSpec) RunResult { return RunResult{ExitCode: -1, TimedOut: true} }
	res, err := b.Build(context.Background(), Request{Package: "hello", Version: "2.10-3"})
	require.NoError(t, err)
	assert.Equal(t, attest.ResultFailed, res.Status)
	assert.Contains(t, res.FailReason, "timed out")

	run.run = func(rs RunSpec) RunResult {
		_ = os.WriteFile(filepath.Join(rs.HostDir, refusedFile), []byte("opinion patch x does not apply\n"), 0o644)
		return RunResult{ExitCode: exitRefused}
	}
	res, err = b.Build(context.Background(), Request{Package: "hello", Version: "2.10-3"})
	require.ErrorIs(t, err, ErrNotApplicable)
	require.NotNil(t, res)
	assert.Equal(t, "opinion patch x does not apply", res.FailReason)
}

func TestConnectWithoutPodman(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Connect(context.Background(), "", WithServiceDir(t.TempDir()))
	require.ErrorIs(t, err, ErrEnvironment)
	assert.Contains(t, err.Error(), "apt-get install podman runc")
}

func TestDiffWithoutDiffoscope(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	require.NoError(t, os.WriteFile(a, []byte("x"), 0o644))
	t.Setenv("PATH", t.TempDir())
	_, err := Diff(context.Background(), a, a)
	require.ErrorIs(t, err, ErrEnvironment)
}

func TestDiff(t *testing.T) {
	if _, err := exec.LookPath("diffoscope"); err != nil {
		t.Skip("diffoscope not installed")
	}
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt"), filepath.Join(dir, "c.txt")
	require.NoError(t, os.WriteFile(a, []byte("hello\nworld\n"), 0o644))
	require.NoError(t, os.WriteFile(b, []byte("hello\nworld\n"), 0o644))
	require.NoError(t, os.WriteFile(c, []byte("hello\nlebowski\n"), 0o644))
	rep, err := Diff(context.Background(), a, b)
	require.NoError(t, err)
	assert.Empty(t, rep)
	rep, err = Diff(context.Background(), a, c)
	require.NoError(t, err)
	assert.Contains(t, string(rep), "lebowski")
}

func TestContainersConf(t *testing.T) {
	c := string(ContainersConf())
	assert.Contains(t, c, `runtime = "runc"`)
	assert.Contains(t, c, `nofile=20000:20000`)
}

// fakeBackend checks the image store's cache and re-import logic.
type fakeBackend struct {
	images  map[string]string // ref -> layer
	imports int
}

func (f *fakeBackend) ImageExists(ctx context.Context, ref string) (bool, error) {
	_, ok := f.images[ref]
	return ok, nil
}
func (f *fakeBackend) ImportImage(ctx context.Context, r io.Reader, ref string) ([]string, error) {
	f.imports++
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, err
	}
	f.images[ref] = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return []string{f.images[ref]}, nil
}
func (f *fakeBackend) ImageLayers(ctx context.Context, ref string) ([]string, error) {
	l, ok := f.images[ref]
	if !ok {
		return nil, errors.New("no such image")
	}
	return []string{l}, nil
}

func TestImageStoreReimports(t *testing.T) {
	dir := t.TempDir()
	l := testLock()
	// Pretend a previous run made the tar and record.
	idir := filepath.Join(dir, "images", l.ImageKey())
	require.NoError(t, os.MkdirAll(idir, 0o755))
	tarPath := filepath.Join(idir, "rootfs.tar")
	require.NoError(t, os.WriteFile(tarPath, []byte("rootfs"), 0o644))
	d, err := fileDigest(tarPath)
	require.NoError(t, err)
	rec := `{"digest":"` + d + `","ref":"localhost/lebowski/bookworm-hello:x","tar_path":"` + tarPath + `"}`
	require.NoError(t, os.WriteFile(filepath.Join(idir, "image.json"), []byte(rec), 0o644))

	be := &fakeBackend{images: map[string]string{}}
	s := newImageStore(dir, be)
	noFetch := func(context.Context, opinions.LockDeb) (string, error) {
		t.Fatal("a cached image fetched packages")
		return "", nil
	}
	img, err := s.EnsureLocked(context.Background(), l, noFetch)
	require.NoError(t, err)
	assert.Equal(t, d, img.Digest)
	assert.Equal(t, 1, be.imports, "lost image must be re-imported from the cached tar")
	_, err = s.EnsureLocked(context.Background(), l, noFetch)
	require.NoError(t, err)
	assert.Equal(t, 1, be.imports, "present image must be reused")
	be.images[img.Ref] = "sha256:" + strings.Repeat("0", 64) // tag moved
	_, err = s.EnsureLocked(context.Background(), l, noFetch)
	require.NoError(t, err)
	assert.Equal(t, 2, be.imports, "a tag pointing elsewhere must be re-imported")
}

// testLock is a valid lock for hello 2.10-3 matching fakeBuilder's source.
func testLock() *opinions.Lock {
	l := &opinions.Lock{Package: "hello", Suite: "bookworm", Arch: "amd64", MirrorDate: time.Date(2026, 7, 11, 10, 0, 0, 0, time.UTC), ImageEpoch: DefaultImageEpoch,
		Source: opinions.LockSource{Version: "2.10-3", Directory: "pool/main/h/hello",
			Dsc:   opinions.LockFile{Name: "hello_2.10-3.dsc", Size: 20, SHA256: strings.Repeat("c", 64)},
			Files: []opinions.LockFile{{Name: "hello_2.10.orig.tar.gz", Size: 1, SHA256: strings.Repeat("e", 64)}}},
		Image: []opinions.LockDeb{{Name: "libc6", Version: "2.36-9", Arch: "amd64", Filename: "pool/main/g/glibc/libc6_2.36-9_amd64.deb", Size: 10, SHA256: strings.Repeat("a", 64)}}}
	l.Normalize()
	return l
}

// TestBuildFromLockRefusals: a lock for another recipe, or a locked input
// no place has, is refused before any image or container.
func TestBuildFromLockRefusals(t *testing.T) {
	for _, tc := range []struct {
		desc string
		mod  func(*opinions.Lock)
		want error
		msg  string
	}{
		{"a lock for another suite", func(l *opinions.Lock) { l.Suite = "trixie" }, ErrInvalidRequest, "suite"},
		{"a lock for another package", func(l *opinions.Lock) { l.Package = "nano" }, ErrInvalidRequest, "package"},
		{"a lock with another source hash", func(l *opinions.Lock) { l.Source.Dsc.SHA256 = strings.Repeat("f", 64) }, source.ErrUnavailable, "hello_2.10-3.dsc"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			b, imgs, run := fakeBuilder(t)
			l := testLock()
			tc.mod(l)
			_, err := b.Build(context.Background(), Request{Package: "hello", Version: "2.10-3", Lock: l})
			require.ErrorIs(t, err, tc.want)
			require.ErrorContains(t, err, tc.msg)
			assert.Zero(t, imgs.calls, "an image was made")
			assert.Zero(t, run.calls, "a container ran")
		})
	}
	// Without a lock, a vanilla build resolves one (and records it).
	b, imgs, run := fakeBuilder(t)
	run.run = func(rs RunSpec) RunResult { return RunResult{ExitCode: 2} }
	res, err := b.Build(context.Background(), Request{Package: "hello", Version: "2.10-3"})
	require.NoError(t, err)
	require.NotNil(t, res.Lock)
	assert.Equal(t, 1, imgs.discovered)
	assert.Equal(t, "2.10-3", res.Lock.Source.Version)
	assert.Contains(t, res.Lock.Packages(), "texinfo")
}
