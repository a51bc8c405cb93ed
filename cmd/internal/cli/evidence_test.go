package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// gpg runs real GnuPG with its own empty home.
func gpg(t *testing.T, home string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatalf("gpg not installed (.ci/install-deps installs gnupg): %v", err)
	}
	cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--no-tty"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A claim exported with `claims export` checks with plain GnuPG and an
// empty keyring plus the exported key; one flipped byte fails it. The
// in-toto export of an own claim verifies as DSSE; of a peer's claim it is
// refused. `claims show` and `blob get` give the evidence.
func TestCLIClaimEvidence(t *testing.T) {
	dd := runBuildDir(t)
	peer := attesttest.Fresh(t, 1)[0]
	theirs := attesttest.Claim(t, peer)
	code, _, errOut := run(t, dd, "claims", "import", writeLines(t, t.TempDir(), []string{string(attesttest.Wire(t, theirs))}))
	require.Equal(t, ExitOK, code, errOut)

	code, out, errOut := run(t, dd, "claims", "show", theirs.ID[:16])
	require.Equal(t, ExitOK, code, errOut)
	for _, want := range []string{theirs.ID, peer.Fingerprint() + " (unvetted)", "Arrived", "by import", "hello"} {
		require.Contains(t, out, want)
	}

	dir := t.TempDir()
	code, out, errOut = run(t, dd, "claims", "export", theirs.ID, "--dir", dir)
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "gpg --verify")
	home := t.TempDir()
	require.NoError(t, os.Chmod(home, 0o700))
	o, err := gpg(t, home, "--import", filepath.Join(dir, peer.Fingerprint()+".asc"))
	require.NoError(t, err, o)
	payload, sig := filepath.Join(dir, theirs.ID+".json"), filepath.Join(dir, theirs.ID+".json.asc")
	o, err = gpg(t, home, "--verify", sig, payload)
	require.NoError(t, err, "gpg rejects an exported claim: %s", o)
	require.Contains(t, o, "Good signature")
	b, err := os.ReadFile(payload)
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	require.NoError(t, os.WriteFile(payload, b, 0o644))
	o, err = gpg(t, home, "--verify", sig, payload)
	require.Error(t, err, "gpg accepts a flipped byte: %s", o)
	require.Contains(t, o, "BAD signature")
	// The .claim file imports elsewhere.
	code, _, errOut = run(t, t.TempDir(), "claims", "import", filepath.Join(dir, theirs.ID+".claim"))
	require.Equal(t, ExitOK, code, errOut)

	// in-toto: a peer's claim cannot be re-signed; an own one can.
	code, _, errOut = run(t, dd, "claims", "export", theirs.ID, "--dir", dir, "--format", "in-toto")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "only own claims")
	code, out, _ = run(t, dd, "--json", "claims", "list", "hello")
	require.Equal(t, ExitOK, code)
	var rows []struct{ ID, Builder string }
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	var own string
	for _, r := range rows {
		if r.Builder != peer.Fingerprint() {
			own = r.ID
		}
	}
	require.NotEmpty(t, own)
	code, _, errOut = run(t, dd, "claims", "export", own, "--dir", dir, "--format", "in-toto")
	require.Equal(t, ExitOK, code, errOut)
	raw, err := os.ReadFile(filepath.Join(dir, own+".intoto.json"))
	require.NoError(t, err)
	var env attest.DSSEEnvelope
	require.NoError(t, json.Unmarshal(raw, &env))
	code, out, _ = run(t, dd, "--json", "claims", "show", own)
	require.Equal(t, ExitOK, code)
	var d struct {
		SignerKey string `json:"signer_key"`
		Evidence  []struct {
			Kind, CID string
			Held      bool
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &d))
	signer, err := attest.ParsePublicKey([]byte(d.SignerKey))
	require.NoError(t, err)
	_, err = attest.VerifyDSSE(&env, signer)
	require.NoError(t, err)

	// The build log the own claim names comes back by CID.
	require.NotEmpty(t, d.Evidence)
	var logCID string
	for _, e := range d.Evidence {
		require.True(t, e.Held, e.Kind)
		if e.Kind == "build log" {
			logCID = e.CID
		}
	}
	code, out, _ = run(t, dd, "blob", "get", logCID)
	require.Equal(t, ExitOK, code)
	require.Equal(t, "fake build log\n", out)
	f := filepath.Join(t.TempDir(), "log.txt")
	code, _, errOut = run(t, dd, "blob", "get", logCID, "-o", f)
	require.Equal(t, ExitOK, code, errOut)

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"claims", "show", "bafk"}, ExitUsage, "first 12+"},
		{[]string{"claims", "show", attesttest.Claim(t, peer, func(s *attest.Statement) { s.Package = "nano" }).ID}, ExitMismatch, "no claim"},
		{[]string{"claims", "export", theirs.ID}, ExitUsage, "--dir"},
		{[]string{"claims", "export", theirs.ID, "--dir", dir, "--format", "xml"}, ExitUsage, "openpgp or in-toto"},
		{[]string{"blob", "get", "not-a-cid"}, ExitUsage, ""},
		{[]string{"blob", "get", vocab.CID([]byte("nobody has this"))}, ExitMismatch, "not held"},
	} {
		code, out, errOut := run(t, dd, tc.args...)
		require.Equal(t, tc.code, code, "%v: %s%s", tc.args, out, errOut)
		require.Contains(t, out+errOut, tc.msg, strings.Join(tc.args, " "))
	}
}

// runBuildDir makes a node with one own (fake) build of hello/o3.
func runBuildDir(t *testing.T) string {
	dd := t.TempDir()
	runBuild(t, dd)
	return dd
}
