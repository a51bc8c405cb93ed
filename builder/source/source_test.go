package source

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFetchHappyPath(t *testing.T) {
	tests := []struct {
		desc    string
		cfg     mirrorConfig
		pkg     string
		version string
		want    string // version expected
	}{
		{desc: "explicit version, Sources.gz", pkg: "hello", version: "1.0-1", want: "1.0-1"},
		{desc: "current version skips Extra-Source-Only", pkg: "hello", version: "", want: "1.0-2"},
		{desc: "uncompressed Sources only", cfg: mirrorConfig{noGzip: true}, pkg: "hello", version: "1.0-2", want: "1.0-2"},
		{desc: "by-hash only", cfg: mirrorConfig{byHash: true}, pkg: "hello", version: "", want: "1.0-2"},
		{desc: "epoch version", pkg: "other", version: "1:2.0+dfsg-3", want: "1:2.0+dfsg-3"},
		{desc: "Extra-Source-Only asked for explicitly", pkg: "hello", version: "9.0-1", want: "9.0-1"},
		{desc: "Valid-Until in the future", cfg: mirrorConfig{validUntil: baseTime.Add(time.Hour)}, pkg: "hello", want: "1.0-2"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			env := newTestEnv(t, tc.cfg)
			src, err := env.fetcher.Fetch(context.Background(), testSuite, tc.pkg, tc.version)
			require.NoError(t, err)
			assert.Equal(t, tc.pkg, src.Package)
			assert.Equal(t, tc.want, src.Version)
			assert.Equal(t, testSuite, src.Suite)
			assert.Equal(t, "3.0 (quilt)", src.Format)
			assert.Equal(t, "any", src.Architecture)
			assert.Equal(t, "debhelper-compat (= 13), gettext, texinfo", src.BuildDepends)
			assert.Equal(t, hex.EncodeToString(env.key.PrimaryKey.Fingerprint), src.Signer)

			var pkg *fakePkg
			for _, p := range env.mirror.pkgs {
				if p.name == tc.pkg && p.version == tc.want {
					pkg = p
				}
			}
			require.NotNil(t, pkg)
			assert.Equal(t, sha(pkg.dsc), src.DscSHA256)
			assert.Equal(t, sha(pkg.dsc), sha256File(t, src.DscPath))
			assert.Equal(t, pkg.dscName(), src.DscName)
			require.Len(t, src.Files, len(pkg.files))
			for _, fl := range src.Files {
				assert.Equal(t, sha(pkg.files[fl.Name]), fl.SHA256, fl.Name)
				assert.Equal(t, int64(len(pkg.files[fl.Name])), fl.Size, fl.Name)
				assert.Equal(t, fl.SHA256, sha256File(t, fl.Path), fl.Name)
				assert.Equal(t, fl.SHA256, sha256File(t, filepath.Join(src.Dir, fl.Name)), "Dir copy of "+fl.Name)
			}
			assert.Equal(t, src.DscSHA256, sha256File(t, filepath.Join(src.Dir, src.DscName)))
			ents, err := os.ReadDir(src.Dir)
			require.NoError(t, err)
			assert.Len(t, ents, len(pkg.files)+1, "Dir holds exactly the .dsc and its files")
		})
	}
}

func TestFetchRefusesTampering(t *testing.T) {
	tests := []struct {
		desc   string
		tamper func(m *fakeMirror) (file string, original []byte)
	}{
		{desc: "tampered .dsc", tamper: func(m *fakeMirror) (string, []byte) {
			p := "pool/main/h/hello/hello_1.0-1.dsc"
			orig := m.get(p)
			m.set(p, bytes.Replace(orig, []byte("gettext"), []byte("evil-gettext"), 1))
			return "hello_1.0-1.dsc", orig
		}},
		{desc: "tampered tarball, same size", tamper: func(m *fakeMirror) (string, []byte) {
			p := "pool/main/h/hello/hello_1.0.orig.tar.gz"
			orig := m.get(p)
			bad := bytes.Clone(orig)
			bad[0] ^= 0xff
			m.set(p, bad)
			return "hello_1.0.orig.tar.gz", orig
		}},
		{desc: "truncated tarball", tamper: func(m *fakeMirror) (string, []byte) {
			p := "pool/main/h/hello/hello_1.0-1.debian.tar.xz"
			orig := m.get(p)
			m.set(p, orig[:len(orig)-1])
			return "hello_1.0-1.debian.tar.xz", orig
		}},
		{desc: "over-long tarball", tamper: func(m *fakeMirror) (string, []byte) {
			p := "pool/main/h/hello/hello_1.0-1.debian.tar.xz"
			orig := m.get(p)
			m.set(p, append(bytes.Clone(orig), "trailing junk"...))
			return "hello_1.0-1.debian.tar.xz", orig
		}},
		{desc: "tampered Sources.gz", tamper: func(m *fakeMirror) (string, []byte) {
			p := "dists/" + testSuite + "/main/source/Sources.gz"
			orig := m.get(p)
			bad := bytes.Clone(orig)
			bad[len(bad)/2] ^= 1
			m.set(p, bad)
			return testSuite + "/main/source/Sources.gz", orig
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			env := newTestEnv(t, mirrorConfig{})
			file, orig := tc.tamper(env.mirror)
			served := env.mirror.get(pathOf(file))
			_, err := env.fetcher.Fetch(context.Background(), testSuite, "hello", "1.0-1")
			require.Error(t, err)
			require.ErrorIs(t, err, ErrHashMismatch)
			var hm *HashMismatchError
			require.ErrorAs(t, err, &hm)
			assert.Equal(t, file, hm.File)
			assert.Equal(t, sha(orig), hm.Expected)
			if len(served) == len(orig) {
				assert.Equal(t, sha(served), hm.Actual)
			}
			assert.NotEqual(t, hm.Expected, hm.Actual)
			for _, s := range []string{file, hm.Expected, hm.Actual} {
				assert.Contains(t, err.Error(), s)
			}
			// Nothing unverified may reach the blob store.
			_, statErr := os.Stat(filepath.Join(env.cache, "blobs", "sha256", hm.Actual))
			assert.True(t, os.IsNotExist(statErr), "tampered bytes must not be cached")
		})
	}
}

// pathOf finds the served path of a file name.
func pathOf(name string) string {
	if strings.HasPrefix(name, testSuite+"/") {
		return "dists/" + name
	}
	return "pool/main/" + name[:1] + "/" + strings.SplitN(name, "_", 2)[0] + "/" + name
}

func TestFetchRefusesDscDisagreeingWithSources(t *testing.T) {
	// The .dsc matches its sha256 in Sources but describes other files:
	// an inconsistency the fetcher must refuse before using the files.
	tests := []struct {
		desc    string
		edit    func(dsc []byte) []byte
		wantMsg string
	}{
		{desc: "extra file in .dsc", wantMsg: "lists 3 files", edit: func(d []byte) []byte {
			return bytes.Replace(d, []byte("Checksums-Sha256:\n"),
				[]byte("Checksums-Sha256:\n "+strings.Repeat("ab", 32)+" 1 extra.tar.gz\n"), 1)
		}},
		{desc: "different hash in .dsc", wantMsg: "hello_1.0.orig.tar.gz: .dsc says sha256", edit: func(d []byte) []byte {
			h := sha([]byte("fake orig tarball of hello 1.0\n"))
			return bytes.Replace(d, []byte(h), []byte(strings.Repeat("0", 64)), 1)
		}},
		{desc: "different version in .dsc", wantMsg: "Sources says hello 1.0-1", edit: func(d []byte) []byte {
			return bytes.Replace(d, []byte("Version: 1.0-1"), []byte("Version: 1.0-7"), 1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			env := newTestEnv(t, mirrorConfig{})
			p := env.mirror.pkgs[0]
			p.fixedDsc = tc.edit(p.dsc)
			require.NotEqual(t, p.dsc, p.fixedDsc)
			env.mirror.build()
			_, err := env.fetcher.Fetch(context.Background(), testSuite, "hello", "1.0-1")
			require.ErrorIs(t, err, ErrMalformed)
			assert.Contains(t, err.Error(), tc.wantMsg)
			assert.Equal(t, 1, env.mirror.hitCount(isPool), "only the .dsc was fetched")
		})
	}
}

func TestInReleaseSignatures(t *testing.T) {
	trusted := sharedArchiveKey(t)
	unknown := newKey(t, "unknown", baseTime.AddDate(-1, 0, 0), 0)
	// Created 2 years ago, valid 1 year: expired when the InRelease is signed.
	expired := newKey(t, "expired", baseTime.AddDate(-2, 0, 0), 365*24*time.Hour)
	revoked := newKey(t, "revoked", baseTime.AddDate(-1, 0, 0), 0)
	require.NoError(t, revoked.RevokeKey(packet.KeySuperseded, "superseded", keyConfig(baseTime.AddDate(0, -1, 0), 0)))
	keyring := writeKeyring(t, trusted, expired, revoked)

	tests := []struct {
		desc       string
		signers    []*openpgp.Entity
		signTime   time.Time
		tamper     func([]byte) []byte
		wantErr    error
		wantMsg    string // in the error
		wantSigner *openpgp.Entity
	}{
		{desc: "trusted key", signers: []*openpgp.Entity{trusted}, wantSigner: trusted},
		{desc: "unknown key only", signers: []*openpgp.Entity{unknown}, wantErr: ErrBadSignature, wantMsg: "not in the keyring"},
		{desc: "expired key only", signers: []*openpgp.Entity{expired}, wantErr: ErrBadSignature, wantMsg: "expired"},
		{desc: "revoked key only", signers: []*openpgp.Entity{revoked}, wantErr: ErrBadSignature, wantMsg: "revoked"},
		{desc: "all three bad", signers: []*openpgp.Entity{unknown, expired, revoked}, wantErr: ErrBadSignature,
			wantMsg: "signature 3: key"},
		{desc: "unknown first, trusted second", signers: []*openpgp.Entity{unknown, trusted}, wantSigner: trusted},
		{desc: "expired (known) first, trusted third", signers: []*openpgp.Entity{expired, unknown, trusted}, wantSigner: trusted},
		{desc: "revoked first, trusted second", signers: []*openpgp.Entity{revoked, trusted}, wantSigner: trusted},
		{desc: "signature from the future", signers: []*openpgp.Entity{trusted}, signTime: baseTime.Add(time.Hour), wantErr: ErrBadSignature, wantMsg: "future"},
		{desc: "signed text altered", signers: []*openpgp.Entity{trusted}, wantErr: ErrBadSignature,
			wantMsg: "does not verify",
			tamper:  func(b []byte) []byte { return bytes.Replace(b, []byte("Origin: Test"), []byte("Origin: Evil"), 1) }},
		{desc: "unsigned text prepended", signers: []*openpgp.Entity{trusted}, wantErr: ErrBadSignature,
			tamper: func(b []byte) []byte { return append([]byte("SHA256:\n 00 1 x\n\n"), b...) }},
		{desc: "signature block removed", signers: []*openpgp.Entity{trusted}, wantErr: ErrBadSignature,
			tamper: func(b []byte) []byte { return b[:bytes.Index(b, []byte("-----BEGIN PGP SIGNATURE"))] }},
		{desc: "not clearsigned at all", signers: []*openpgp.Entity{trusted}, wantErr: ErrBadSignature,
			tamper: func(b []byte) []byte { return []byte("Origin: Test\nSuite: stable\n") }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			m := newFakeMirror(t, mirrorConfig{signers: tc.signers, signTime: tc.signTime})
			if tc.tamper != nil {
				p := "dists/" + testSuite + "/InRelease"
				m.set(p, tc.tamper(m.get(p)))
			}
			f, err := New(t.TempDir(), WithMirror(m.url()), WithKeyring(keyring), WithNow(func() time.Time { return baseTime }))
			require.NoError(t, err)
			src, err := f.Fetch(context.Background(), testSuite, "hello", "1.0-1")
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				assert.Contains(t, err.Error(), tc.wantMsg)
				assert.Zero(t, m.hitCount(isPool), "nothing fetched after a bad InRelease")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, hex.EncodeToString(tc.wantSigner.PrimaryKey.Fingerprint), src.Signer)
		})
	}
}

func TestReleaseFreshness(t *testing.T) {
	tests := []struct {
		desc    string
		cfg     mirrorConfig
		wantErr error
	}{
		{desc: "Valid-Until passed", cfg: mirrorConfig{validUntil: baseTime.Add(-time.Minute)}, wantErr: ErrStale},
		{desc: "Date in the future", cfg: mirrorConfig{date: baseTime.Add(time.Hour)}, wantErr: ErrStale},
		{desc: "Date slightly ahead (clock skew)", cfg: mirrorConfig{date: baseTime.Add(time.Minute)}},
		{desc: "Release of another suite", cfg: mirrorConfig{codename: "othersuite"}, wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			env := newTestEnv(t, tc.cfg)
			_, err := env.fetcher.Fetch(context.Background(), testSuite, "hello", "1.0-1")
			if tc.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			assert.Zero(t, env.mirror.hitCount(isPool))
		})
	}
}

func TestCachedInReleaseExpires(t *testing.T) {
	// A cached InRelease whose Valid-Until passes is not reused: offline
	// it is an error, online it is fetched again.
	env := newTestEnv(t, mirrorConfig{validUntil: baseTime.Add(2 * time.Hour)})
	ctx := context.Background()
	_, err := env.fetcher.Fetch(ctx, testSuite, "hello", "")
	require.NoError(t, err)
	env.now = baseTime.Add(3 * time.Hour)
	off := env.newFetcher(t, WithOffline(true))
	_, err = off.Versions(ctx, testSuite, "hello")
	require.ErrorIs(t, err, ErrStale)
	_, err = env.fetcher.Versions(ctx, testSuite, "hello")
	require.ErrorIs(t, err, ErrStale, "the mirror still serves the expired InRelease")
}

func TestCache(t *testing.T) {
	ctx := context.Background()

	t.Run("explicit version: second fetch makes no requests", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{})
		first, err := env.fetcher.Fetch(ctx, testSuite, "hello", "1.0-1")
		require.NoError(t, err)
		assert.Equal(t, 3, env.mirror.hitCount(isPool), ".dsc + 2 files")
		env.mirror.resetHits()
		env.now = env.now.Add(24 * time.Hour) // InRelease long past max age: not needed anyway
		second, err := env.fetcher.Fetch(ctx, testSuite, "hello", "1.0-1")
		require.NoError(t, err)
		assert.Zero(t, env.mirror.hitCount(anyPath), "warm cache must not touch the network")
		assert.Equal(t, first, second)
	})

	t.Run("new Fetcher on the same cache dir", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{})
		first, err := env.fetcher.Fetch(ctx, testSuite, "hello", "1.0-1")
		require.NoError(t, err)
		env.mirror.resetHits()
		second, err := env.newFetcher(t).Fetch(ctx, testSuite, "hello", "1.0-1")
		require.NoError(t, err)
		assert.Zero(t, env.mirror.hitCount(anyPath))
		assert.Equal(t, first, second)
	})

	t.Run("current version: InRelease reused within max age, re-fetched after", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{}, WithReleaseMaxAge(10*time.Minute))
		_, err := env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		env.mirror.resetHits()
		env.now = env.now.Add(5 * time.Minute)
		src, err := env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		assert.Equal(t, "1.0-2", src.Version)
		assert.Zero(t, env.mirror.hitCount(anyPath), "within max age: no request at all")

		env.now = env.now.Add(10 * time.Minute)
		_, err = env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		assert.Equal(t, 1, env.mirror.hitCount(isInRelease), "past max age: InRelease once")
		assert.Zero(t, env.mirror.hitCount(isSources), "Sources unchanged: cached")
		assert.Zero(t, env.mirror.hitCount(isPool), "package cached")
	})

	t.Run("offline", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{})
		off := env.newFetcher(t, WithOffline(true))
		_, err := off.Fetch(ctx, testSuite, "hello", "1.0-1")
		require.ErrorIs(t, err, ErrNotCached)
		_, err = env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		env.mirror.resetHits()
		env.now = env.now.Add(30 * 24 * time.Hour)
		_, err = off.Fetch(ctx, testSuite, "hello", "1.0-1")
		require.ErrorIs(t, err, ErrNotCached, "1.0-1 was never fetched")
		src, err := off.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err, "offline uses the cached InRelease whatever its age")
		assert.Equal(t, "1.0-2", src.Version)
		assert.Zero(t, env.mirror.hitCount(anyPath))
	})

	t.Run("corrupt cached blob is fetched again", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{})
		src, err := env.fetcher.Fetch(ctx, testSuite, "hello", "1.0-1")
		require.NoError(t, err)
		blob := src.Files[0].Path
		require.NoError(t, os.Chmod(blob, 0o644))
		require.NoError(t, os.WriteFile(blob, []byte("rotten"), 0o644))
		env.mirror.resetHits()
		again, err := env.fetcher.Fetch(ctx, testSuite, "hello", "1.0-1")
		require.NoError(t, err)
		assert.Equal(t, src.Files[0].SHA256, sha256File(t, again.Files[0].Path))
		assert.Equal(t, 1, env.mirror.hitCount(isPool), "only the corrupt file")
	})

	t.Run("corrupt cached InRelease is fetched and stored again", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{})
		_, err := env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		blob := filepath.Join(env.cache, "blobs", "sha256", sha(env.mirror.get("dists/"+testSuite+"/InRelease")))
		require.NoError(t, os.Chmod(blob, 0o644))
		require.NoError(t, os.WriteFile(blob, []byte("rotten"), 0o644))
		env.mirror.resetHits()
		_, err = env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		assert.Equal(t, 1, env.mirror.hitCount(isInRelease), "re-fetched despite being young")
		env.mirror.resetHits()
		_, err = env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		assert.Zero(t, env.mirror.hitCount(anyPath), "the re-stored blob is good again")
	})

	t.Run("older InRelease from a lagging mirror is not taken", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{}, WithReleaseMaxAge(0))
		_, err := env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		// The mirror now serves an older InRelease without hello 1.0-2.
		env.mirror.pkgs = env.mirror.pkgs[:1]
		env.mirror.cfg.date = env.mirror.cfg.date.Add(-24 * time.Hour)
		env.mirror.build()
		src, err := env.fetcher.Fetch(ctx, testSuite, "hello", "")
		require.NoError(t, err)
		assert.Equal(t, "1.0-2", src.Version)
	})
}

func TestNotFound(t *testing.T) {
	env := newTestEnv(t, mirrorConfig{})
	ctx := context.Background()
	tests := []struct {
		desc, suite, pkg, version string
		wantAvail                 []string
		wantMsg                   string
	}{
		{desc: "unknown version lists available", suite: testSuite, pkg: "hello", version: "3.0-1",
			wantAvail: []string{"9.0-1", "1.0-2", "1.0-1"}, wantMsg: "available: 9.0-1, 1.0-2, 1.0-1"},
		{desc: "unknown package", suite: testSuite, pkg: "nosuch", wantMsg: `package "nosuch" not found`},
		{desc: "unknown suite", suite: "nosuite", pkg: "hello", wantMsg: `suite "nosuite" not found`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := env.fetcher.Fetch(ctx, tc.suite, tc.pkg, tc.version)
			require.ErrorIs(t, err, ErrNotFound)
			var nf *NotFoundError
			require.ErrorAs(t, err, &nf)
			assert.Equal(t, tc.wantAvail, nf.Available)
			assert.Contains(t, err.Error(), tc.wantMsg)
		})
	}
}

func TestVersions(t *testing.T) {
	env := newTestEnv(t, mirrorConfig{})
	vs, err := env.fetcher.Versions(context.Background(), testSuite, "hello")
	require.NoError(t, err)
	assert.Equal(t, []string{"9.0-1", "1.0-2", "1.0-1"}, vs)
}

func TestBadArguments(t *testing.T) {
	env := newTestEnv(t, mirrorConfig{})
	tests := []struct{ desc, suite, pkg, version string }{
		{"path traversal in suite", "../etc", "hello", ""},
		{"path traversal in package", testSuite, "../hello", ""},
		{"bad version", testSuite, "hello", "1.0/../../x"},
		{"empty package", testSuite, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := env.fetcher.Fetch(context.Background(), tc.suite, tc.pkg, tc.version)
			require.Error(t, err)
			assert.Zero(t, env.mirror.hitCount(anyPath))
		})
	}
}

func TestContextCancelled(t *testing.T) {
	env := newTestEnv(t, mirrorConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := env.fetcher.Fetch(ctx, testSuite, "hello", "1.0-1")
	require.ErrorIs(t, err, context.Canceled)
}

func TestProgress(t *testing.T) {
	var calls []string
	env := newTestEnv(t, mirrorConfig{}, WithProgress(func(name string, done, total int64) {
		if done == total {
			calls = append(calls, name)
		}
	}))
	_, err := env.fetcher.Fetch(context.Background(), testSuite, "hello", "1.0-1")
	require.NoError(t, err)
	assert.Contains(t, calls, "hello_1.0-1.dsc")
	assert.Contains(t, calls, "hello_1.0.orig.tar.gz")
}

// TestDirWorksWithDpkgSource serves a real dpkg-source-built package from
// the fake mirror and extracts the fetched Dir (needs dpkg-source).
func TestDirWorksWithDpkgSource(t *testing.T) {
	if _, err := exec.LookPath("dpkg-source"); err != nil {
		t.Skip("dpkg-source not installed")
	}
	work := t.TempDir()
	pkgDir := filepath.Join(work, "mini-1.0")
	require.NoError(t, os.MkdirAll(filepath.Join(pkgDir, "debian", "source"), 0o755))
	write := func(p, s string) { require.NoError(t, os.WriteFile(filepath.Join(pkgDir, p), []byte(s), 0o644)) }
	write("debian/source/format", "3.0 (native)\n")
	write("debian/control", "Source: mini\nMaintainer: T <t@example.invalid>\nBuild-Depends: debhelper-compat (= 13)\n\nPackage: mini\nArchitecture: all\nDescription: d\n d\n")
	write("debian/changelog", "mini (1.0) unstable; urgency=low\n\n  * x\n\n -- T <t@example.invalid>  Mon, 01 Jan 2024 00:00:00 +0000\n")
	write("debian/rules", "#!/usr/bin/make -f\n%:\n\tdh $@\n")
	cmd := exec.Command("dpkg-source", "-b", "mini-1.0")
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	dscBytes, err := os.ReadFile(filepath.Join(work, "mini_1.0.dsc"))
	require.NoError(t, err)
	tarBytes, err := os.ReadFile(filepath.Join(work, "mini_1.0.tar.xz"))
	require.NoError(t, err)

	env := newTestEnv(t, mirrorConfig{})
	m := env.mirror
	p := &fakePkg{name: "mini", version: "1.0", files: map[string][]byte{"mini_1.0.tar.xz": tarBytes}}
	p.fixedDsc = dscBytes // the real .dsc, not a generated one
	m.pkgs = append(m.pkgs, p)
	m.build()

	src, err := env.fetcher.Fetch(context.Background(), testSuite, "mini", "1.0")
	require.NoError(t, err)
	out2 := filepath.Join(t.TempDir(), "x")
	cmd = exec.Command("dpkg-source", "--no-check", "-x", filepath.Join(src.Dir, src.DscName), out2)
	res, err := cmd.CombinedOutput()
	require.NoError(t, err, string(res))
	_, err = os.Stat(filepath.Join(out2, "debian", "rules"))
	require.NoError(t, err)
}

func TestSizeLimits(t *testing.T) {
	t.Run("InRelease over 1 MiB", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{})
		env.mirror.set("dists/"+testSuite+"/InRelease", bytes.Repeat([]byte("x"), maxInReleaseSize+1))
		_, err := env.fetcher.Fetch(context.Background(), testSuite, "hello", "1.0-1")
		require.ErrorIs(t, err, ErrTooLarge)
	})
	t.Run("file larger than the limit is not downloaded", func(t *testing.T) {
		env := newTestEnv(t, mirrorConfig{})
		_, err := env.fetcher.fetchBlob(context.Background(), "big.tar.xz", env.mirror.url()+"/pool/main/h/hello/hello_1.0.orig.tar.gz",
			checksum{SHA256: goodSHA, Size: maxSourceFile + 1, Name: "big.tar.xz"}, maxSourceFile)
		require.ErrorIs(t, err, ErrTooLarge)
		assert.Zero(t, env.mirror.hitCount(anyPath))
	})
}

func TestXZOnlySuite(t *testing.T) {
	// Like bookworm-updates: Release lists Sources and Sources.xz, only the
	// .xz is served.
	env := newTestEnv(t, mirrorConfig{xzOnly: true})
	src, err := env.fetcher.Fetch(context.Background(), testSuite, "hello", "1.0-1")
	require.NoError(t, err)
	assert.Equal(t, "1.0-1", src.Version)
}
