package source

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLibraryStopsAtFirstKnownSigner documents why verifyInRelease walks
// the signature packets itself: clearsign.Block.VerifySignature gives up
// when the first signer it knows has an expired key, even though a later
// signature is good (the situation of bookworm's triple-signed InRelease
// once one of its keys expires).
func TestLibraryStopsAtFirstKnownSigner(t *testing.T) {
	trusted := sharedArchiveKey(t)
	expired := newKey(t, "expired", baseTime.AddDate(-2, 0, 0), 365*24*time.Hour)
	kr := openpgp.EntityList{expired, trusted}
	msg := clearsignWith(t, []byte("Suite: x\n"), baseTime.Add(-time.Minute), expired, trusted)

	blk, _ := clearsign.Decode(msg)
	require.NotNil(t, blk)
	_, libErr := blk.VerifySignature(kr, nil)
	assert.Error(t, libErr, "the library alone refuses (first known signer expired)")

	v, err := verifyInRelease(msg, kr, baseTime)
	require.NoError(t, err)
	assert.Equal(t, hexFP(trusted), v.Primary)
	assert.Equal(t, "Suite: x\n", string(v.Plaintext))
}

func hexFP(e *openpgp.Entity) string { return hex.EncodeToString(e.PrimaryKey.Fingerprint) }

func TestParagraphReader(t *testing.T) {
	tests := []struct {
		desc    string
		in      string
		want    []paragraph
		wantErr bool
	}{
		{desc: "two paragraphs, continuation, case-insensitive names",
			in: "Package: a\nChecksums-Sha256:\n x 1 f\n y 2 g\n\n\nPACKAGE: b\nDescription: one\n .\n two\n",
			want: []paragraph{
				{"package": "a", "checksums-sha256": "x 1 f\ny 2 g"},
				{"package": "b", "description": "one\n\ntwo"},
			}},
		{desc: "CRLF and trailing spaces", in: "A: 1 \r\nB:2\r\n",
			want: []paragraph{{"a": "1", "b": "2"}}},
		{desc: "whitespace-only line separates", in: "A: 1\n \t\nA: 2\n",
			want: []paragraph{{"a": "1"}, {"a": "2"}}},
		{desc: "continuation first", in: " x\nA: 1\n", wantErr: true},
		{desc: "no colon", in: "A 1\n", wantErr: true},
		{desc: "duplicate field", in: "A: 1\na: 2\n", wantErr: true},
		{desc: "space in field name", in: "A B: 1\n", wantErr: true},
		{desc: "empty", in: "\n\n", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pr := newParagraphReader(strings.NewReader(tc.in))
			var got []paragraph
			var err error
			for {
				var p paragraph
				p, err = pr.next()
				if err != nil {
					break
				}
				got = append(got, p)
			}
			if tc.wantErr {
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.ErrorIs(t, err, io.EOF)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParagraphReaderLimits(t *testing.T) {
	long := "A: " + strings.Repeat("x", maxLineLen+10) + "\n"
	_, err := newParagraphReader(strings.NewReader(long)).next()
	require.ErrorIs(t, err, ErrMalformed)

	var big strings.Builder
	big.WriteString("A: 1\n")
	line := " " + strings.Repeat("y", 1000) + "\n"
	for big.Len() < maxParagraphLen+len(line) {
		big.WriteString(line)
	}
	_, err = newParagraphReader(strings.NewReader(big.String())).next()
	require.ErrorIs(t, err, ErrMalformed)
}

const goodSHA = "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b"

func TestParseRelease(t *testing.T) {
	base := "Suite: stable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nSHA256:\n " + goodSHA + " 12 main/source/Sources.gz\n"
	tests := []struct {
		desc    string
		in      string
		check   func(t *testing.T, r *release)
		wantErr string
	}{
		{desc: "bookworm-like", in: base, check: func(t *testing.T, r *release) {
			assert.Equal(t, "bookworm", r.Codename)
			assert.Equal(t, time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC), r.Date)
			assert.True(t, r.ValidUntil.IsZero())
			assert.Equal(t, checksum{goodSHA, 12, "main/source/Sources.gz"}, r.SHA256["main/source/Sources.gz"])
		}},
		{desc: "Valid-Until, numeric zone, single-digit day, by-hash",
			in: base + "Valid-Until: Sat, 1 Aug 2026 10:16:37 +0000\nAcquire-By-Hash: yes\n",
			check: func(t *testing.T, r *release) {
				assert.Equal(t, time.Date(2026, 8, 1, 10, 16, 37, 0, time.UTC), r.ValidUntil)
				assert.True(t, r.AcquireByHash)
			}},
		{desc: "no Date", in: strings.Replace(base, "Date:", "X-Date:", 1), wantErr: "no Date"},
		{desc: "bad Date", in: strings.Replace(base, "Sat, 11 Jul 2026", "2026-07-11", 1), wantErr: "unrecognised date"},
		{desc: "no SHA256", in: "Suite: s\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nMD5Sum:\n 00 1 x\n", wantErr: "no SHA256"},
		{desc: "upper-case hash", in: strings.Replace(base, goodSHA, strings.ToUpper(goodSHA), 1), wantErr: "not a lower-case hex"},
		{desc: "negative size", in: strings.Replace(base, " 12 ", " -12 ", 1), wantErr: "bad size"},
		{desc: "no suite", in: strings.Replace(strings.Replace(base, "Suite: stable\n", "", 1), "Codename: bookworm\n", "", 1), wantErr: "neither Suite nor Codename"},
		{desc: "two paragraphs", in: base + "\nSuite: x\n", wantErr: "more than one paragraph"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r, err := parseRelease([]byte(tc.in))
			if tc.wantErr != "" {
				require.ErrorIs(t, err, ErrMalformed)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, r)
		})
	}
}

func TestParseSourcesEntry(t *testing.T) {
	base := "Package: hello\nVersion: 2.10-3\nDirectory: pool/main/h/hello\nChecksums-Sha256:\n " +
		goodSHA + " 1721 hello_2.10-3.dsc\n " + goodSHA + " 100 hello_2.10.orig.tar.gz\n"
	tests := []struct {
		desc, in, wantErr string
	}{
		{desc: "good", in: base},
		{desc: "Directory escapes the pool", in: strings.Replace(base, "pool/main/h/hello", "pool/../../etc", 1), wantErr: "Directory"},
		{desc: "absolute Directory", in: strings.Replace(base, "pool/main/h/hello", "/etc", 1), wantErr: "Directory"},
		{desc: "file name with slash", in: strings.Replace(base, "hello_2.10.orig.tar.gz", "../x.tar.gz", 1), wantErr: "bad file name"},
		{desc: "no .dsc", in: strings.Replace(base, "hello_2.10-3.dsc", "hello_2.10-3.txt", 1), wantErr: "0 .dsc files"},
		{desc: "duplicate file", in: strings.Replace(base, "hello_2.10.orig.tar.gz", "hello_2.10-3.dsc", 1), wantErr: "twice"},
		{desc: "bad version", in: strings.Replace(base, "2.10-3\n", "2.10 3\n", 1), wantErr: "invalid version"},
		{desc: "bad package", in: strings.Replace(base, "Package: hello", "Package: Hello!", 1), wantErr: "bad Package"},
		{desc: "no checksums", in: "Package: hello\nVersion: 1\nDirectory: pool/x\n", wantErr: "no Checksums-Sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p, err := parseSingleParagraph([]byte(tc.in))
			require.NoError(t, err)
			e, err := parseSourcesEntry(p)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, ErrMalformed)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			d, err := e.dscFile()
			require.NoError(t, err)
			assert.Equal(t, "hello_2.10-3.dsc", d.Name)
		})
	}
}

func TestFindSourcesAndPick(t *testing.T) {
	in := "Package: a\nVersion: 1\nDirectory: pool/a\nChecksums-Sha256:\n " + goodSHA + " 1 a_1.dsc\n\n" +
		"Package: hello\nVersion: 1.0~rc1-1\nDirectory: pool/h\nChecksums-Sha256:\n " + goodSHA + " 1 hello_1.0~rc1-1.dsc\n\n" +
		"Package: hello\nVersion: 1.0-1\nDirectory: pool/h\nChecksums-Sha256:\n " + goodSHA + " 1 hello_1.0-1.dsc\n\n" +
		"Package: hello\nVersion: 0.9-1\nDirectory: pool/h\nChecksums-Sha256:\n " + goodSHA + " 1 hello_0.9-1.dsc\n\n" +
		// an unrelated malformed paragraph is not validated
		"Package: b\nDirectory: /etc\n"
	es, err := findSources(context.Background(), strings.NewReader(in), "hello")
	require.NoError(t, err)
	assert.Equal(t, []string{"1.0-1", "1.0~rc1-1", "0.9-1"}, versionsOf(es))
	e, err := pickEntry(es, "s", "hello", "")
	require.NoError(t, err)
	assert.Equal(t, "1.0-1", e.Version, "~ sorts before the release")
	e, err = pickEntry(es, "s", "hello", "0.9-1")
	require.NoError(t, err)
	assert.Equal(t, "0.9-1", e.Version)
	_, err = pickEntry(es, "s", "hello", "2-1")
	require.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "available: 1.0-1, 1.0~rc1-1, 0.9-1")
}

func TestParseDsc(t *testing.T) {
	plain := "Format: 3.0 (quilt)\nSource: hello\nVersion: 2.10-3\nArchitecture: any\n" +
		"Build-Depends: debhelper-compat (= 13),\n gettext,\nBuild-Depends-Arch: libc6-dev\n" +
		"Build-Conflicts: autoconf2.13\nChecksums-Sha256:\n " + goodSHA + " 100 hello_2.10.orig.tar.gz\n"
	signed := clearsignWith(t, []byte(plain), baseTime, newKey(t, "uploader", baseTime.AddDate(-1, 0, 0), 0))
	tests := []struct {
		desc    string
		in      []byte
		wantErr string
	}{
		{desc: "plain", in: []byte(plain)},
		{desc: "clearsigned (signature not checked)", in: signed},
		{desc: "clearsigned with garbage armor", in: []byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + plain), wantErr: "clearsign"},
		{desc: "no Format", in: []byte(strings.Replace(plain, "Format: 3.0 (quilt)\n", "", 1)), wantErr: "no Format"},
		{desc: "bad file name", in: []byte(strings.Replace(plain, "hello_2.10.orig.tar.gz", "a/b", 1)), wantErr: "bad file name"},
		{desc: "no checksums", in: []byte("Format: 1.0\nSource: hello\nVersion: 1\n"), wantErr: "no Checksums-Sha256"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d, err := parseDsc(tc.in)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, ErrMalformed)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "hello", d.Source)
			assert.Equal(t, "2.10-3", d.Version)
			assert.Equal(t, "3.0 (quilt)", d.Format)
			assert.Equal(t, "debhelper-compat (= 13), gettext, libc6-dev", d.BuildDepends)
			assert.Equal(t, "autoconf2.13", d.BuildConflicts)
			assert.Equal(t, []checksum{{goodSHA, 100, "hello_2.10.orig.tar.gz"}}, d.Files)
		})
	}
}

// Fuzz tests for every parser of untrusted bytes: none may panic, and
// what they accept must satisfy the invariants the fetcher relies on.

func FuzzParseRelease(f *testing.F) {
	f.Add([]byte("Suite: stable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nValid-Until: Sat, 1 Aug 2026 10:16:37 +0000\nSHA256:\n " + goodSHA + " 12 main/source/Sources.gz\n"))
	f.Add([]byte("Suite: s\nDate: Mon, 02 Jan 2006 15:04:05 MST\nSHA256:\n x 1 y\n"))
	f.Add([]byte(" \n:\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRelease(b)
		if err != nil {
			return
		}
		for name, c := range r.SHA256 {
			if !isSHA256Hex(c.SHA256) || c.Size < 0 || name != c.Name {
				t.Fatalf("accepted bad checksum %+v", c)
			}
		}
	})
}

func FuzzSourcesParagraphs(f *testing.F) {
	f.Add([]byte("Package: hello\nVersion: 2.10-3\nDirectory: pool/main/h/hello\nChecksums-Sha256:\n " + goodSHA + " 1721 hello_2.10-3.dsc\n\nPackage: hello\nVersion: 1:2\nExtra-Source-Only: yes\n"))
	f.Add([]byte("Package: hello\nDirectory: ../..\n"))
	f.Add([]byte("Package: hello\n x\n\n\n y\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := findSources(context.Background(), bytes.NewReader(b), "hello")
		if err != nil {
			return
		}
		for _, e := range es {
			if err := validDirectory(e.Directory); err != nil {
				t.Fatalf("accepted Directory %q", e.Directory)
			}
			for _, c := range e.Files {
				if !validFileName(c.Name) || strings.Contains(c.Name, "/") {
					t.Fatalf("accepted file name %q", c.Name)
				}
			}
		}
		_, _ = pickEntry(es, "s", "hello", "")
		_ = versionsOf(es)
	})
}

func FuzzParseDsc(f *testing.F) {
	f.Add([]byte("Format: 3.0 (quilt)\nSource: hello\nVersion: 2.10-3\nBuild-Depends: a, b\nChecksums-Sha256:\n " + goodSHA + " 1 hello_2.10.orig.tar.gz\n"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nFormat: 1.0\n-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDsc(b)
		if err != nil {
			return
		}
		for _, c := range d.Files {
			if !validFileName(c.Name) || !isSHA256Hex(c.SHA256) {
				t.Fatalf("accepted %+v", c)
			}
		}
	})
}

func FuzzVerifyInRelease(f *testing.F) {
	key := sharedArchiveKey(f)
	kr := openpgp.EntityList{key}
	good := clearsignWith(f, []byte("Suite: x\n"), baseTime.Add(-time.Minute), key)
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("Suite: x"), []byte("Suite: y"), 1))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\n\nx\n-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := verifyInRelease(b, kr, baseTime)
		if err == nil && !bytes.Contains(b, v.Plaintext[:min(len(v.Plaintext), 8)]) {
			t.Fatalf("verified plaintext not from the input")
		}
	})
}
