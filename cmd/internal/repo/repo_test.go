package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pault.ag/go/debian/control"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/debfile"
	"github.com/lebowski-dist/lebowski/builder/debfile/debfiletest"
)

// A repository of one real .deb: Packages lists it with the fields apt
// needs, InRelease is signed so that GnuPG's gpgv (what apt runs) accepts
// it with the node key, and the pool serves the exact bytes.
func TestRepository(t *testing.T) {
	id := attesttest.Fresh(t, 1)[0]
	p := debfiletest.Build(t, t.TempDir(), debfiletest.Package{Name: "hello", Version: "2.10-3~o3+1"})
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	info, err := debfile.Inspect(context.Background(), bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	pkg := Package{Name: info.FileName(), SHA256: vocab.SHA256Hex(data), Size: int64(len(data)), RecipeID: attesttest.Hex("r"), Control: info.Control}
	x, err := Build([]Package{pkg, pkg}, id, time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, x.List(), 1, "duplicates listed once")

	var paras []control.Paragraph
	pr, err := control.NewParagraphReader(bytes.NewReader(x.Packages), nil)
	require.NoError(t, err)
	for {
		para, err := pr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		paras = append(paras, *para)
	}
	require.Len(t, paras, 1)
	assert.Equal(t, "hello", paras[0].Values["Package"])
	assert.Equal(t, "2.10-3~o3+1", paras[0].Values["Version"])
	assert.Equal(t, pkg.Pool(), paras[0].Values["Filename"])
	assert.Equal(t, pkg.SHA256, paras[0].Values["SHA256"])
	assert.Contains(t, string(x.Release), vocab.SHA256Hex(x.Packages))

	// InRelease verifies with the node key (go-crypto) ...
	block, _ := clearsign.Decode(x.InRelease)
	require.NotNil(t, block)
	_, err = block.VerifySignature(openpgp.EntityList{id.Entity}, nil)
	require.NoError(t, err)
	assert.Equal(t, strings.TrimRight(string(x.Release), "\n"), strings.TrimRight(string(block.Plaintext), "\n"))
	// ... and with GnuPG's gpgv, as apt checks it.
	arm, err := attest.ArmorPublicKey(id.Entity)
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.asc"), []byte(arm), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "InRelease"), x.InRelease, 0o644))
	deArm := exec.Command("gpg", "--batch", "--homedir", dir, "--dearmor", "-o", filepath.Join(dir, "key.gpg"), filepath.Join(dir, "key.asc"))
	out, err := deArm.CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command("gpgv", "--homedir", dir, "--keyring", filepath.Join(dir, "key.gpg"), filepath.Join(dir, "InRelease")).CombinedOutput()
	require.NoError(t, err, "gpgv rejects InRelease: %s", out)

	s := NewServer(func(_ context.Context, sum string) ([]byte, error) {
		if sum == pkg.SHA256 {
			return data, nil
		}
		return nil, errors.New("no such blob")
	}, arm)
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func(p string) (int, []byte) {
		resp, err := http.Get(srv.URL + p)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, _ := get("/dists/lebowski/InRelease")
	assert.Equal(t, http.StatusServiceUnavailable, code, "before the first index")
	s.Set(x)
	for path, want := range map[string][]byte{
		"/dists/lebowski/InRelease":                  x.InRelease,
		"/dists/lebowski/Release":                    x.Release,
		"/dists/lebowski/main/binary-amd64/Packages": x.Packages,
		"/" + pkg.Pool():                             data,
		"/lebowski.asc":                              []byte(arm),
	} {
		code, b := get(path)
		assert.Equal(t, http.StatusOK, code, path)
		assert.Equal(t, want, b, path)
	}
	for _, p := range []string{"/pool/main/00/" + attesttest.Hex("x") + "/evil.deb", "/../../etc/passwd", "/dists/other/InRelease"} {
		code, _ := get(p)
		assert.Equal(t, http.StatusNotFound, code, p)
	}
	resp, err := http.Post(srv.URL+"/dists/lebowski/InRelease", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
