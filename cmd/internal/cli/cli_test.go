package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/store"
)

// run executes the CLI in-process against dataDir and returns its exit
// code, stdout and stderr.
func run(t *testing.T, dataDir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	g := &globals{out: &out, errOut: &errOut}
	root := newRoot(g)
	root.SetArgs(append([]string{"--data-dir", dataDir, "--opinions", "../../../opinions"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(context.Background())
	code := 0
	if err != nil {
		code = exitCode(g, err)
	}
	return code, out.String(), errOut.String()
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// signedClaims writes n claims for hello/o3 by fresh builders (the same
// artifact hash unless bad) into a file, one envelope per line.
func signedClaims(t *testing.T, dir string, n int, hash string) (string, []string) {
	t.Helper()
	var lines, fprs []string
	for i, id := range attesttest.Fresh(t, n) {
		c := attesttest.Claim(t, id, attesttest.Artifact(hash), func(s *attest.Statement) { s.PeerID = "peer" + string(rune('a'+i)) })
		lines = append(lines, string(attesttest.Wire(t, c)))
		fprs = append(fprs, id.Fingerprint())
	}
	p := filepath.Join(dir, "claims.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	return p, fprs
}

// The store budget of the config applies to imports without the daemon
// too, and the CLI says what was not stored and why.
func TestCLIClaimsImportOverBudget(t *testing.T) {
	dd := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dd, "config.yaml"), []byte("budget:\n  bytes_per_key: 1\n"), 0o600))
	p, _ := signedClaims(t, t.TempDir(), 2, sum("good deb"))
	code, out, errOut := run(t, dd, "claims", "import", p)
	require.Equal(t, ExitUsage, code, out+errOut)
	require.Contains(t, out, "0 new, 0 duplicate, 0 equivocation, 0 rejected, 2 over budget")
	require.Contains(t, errOut, "not stored, over budget")
	require.Contains(t, errOut, "lebowski key trust")
}

func TestCLIClaimsInfoTrust(t *testing.T) {
	dd := t.TempDir()
	good := sum("good deb")
	p, fprs := signedClaims(t, t.TempDir(), 3, good)

	code, out, _ := run(t, dd, "claims", "import", p)
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "3 new")
	code, out, _ = run(t, dd, "claims", "import", p)
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "3 duplicate")

	// Unvetted builders: no consensus yet.
	code, out, _ = run(t, dd, "info", "hello")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "0/0 trusted builders agree (+3 unvetted keys, not counted)")
	require.Contains(t, out, "UNVERIFIED")

	for _, f := range fprs {
		code, _, errOut := run(t, dd, "key", "trust", f)
		require.Equal(t, ExitOK, code, errOut)
	}
	code, out, _ = run(t, dd, "info", "hello", "--opinion", "o3")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "3/3 trusted builders agree")
	require.Contains(t, out, "██████░░░░ 6/10")

	code, out, _ = run(t, dd, "--json", "info", "hello")
	require.Equal(t, ExitOK, code)
	var res struct {
		Recipes []struct {
			Report struct {
				Score     float64
				Consensus struct{ Artifacts []attest.Artifact }
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, good, res.Recipes[0].Report.Consensus.Artifacts[0].SHA256)

	code, out, _ = run(t, dd, "--json", "claims", "list", "hello")
	require.Equal(t, ExitOK, code)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	require.Len(t, rows, 3)
}

func TestCLIExitCodes(t *testing.T) {
	dd := t.TempDir()
	garbage := filepath.Join(t.TempDir(), "garbage.jsonl")
	require.NoError(t, os.WriteFile(garbage, []byte("{\"payload_type\":1}\nnot json\n"), 0o644))
	badOpinion := filepath.Join(t.TempDir(), "hello", "x.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(badOpinion), 0o755))
	require.NoError(t, os.WriteFile(badOpinion, []byte("name: x\npackage: hello\nbuild: {cflags: {append: [\"-O2;rm -rf /\"]}}\n"), 0o644))
	typo := filepath.Join(t.TempDir(), "typo")
	code, _, errOut := run(t, typo, "info", "hello")
	require.Equal(t, ExitEnv, code, errOut)
	require.Contains(t, errOut, "no Lebowski node")
	_, statErr := os.Stat(typo)
	require.True(t, os.IsNotExist(statErr), "a read command on a mistyped --data-dir creates nothing")
	code, _, errOut = run(t, dd, "key", "gen")
	require.Equal(t, ExitOK, code, errOut)
	for _, tc := range []struct {
		desc string
		args []string
		code int
		msg  string
	}{
		{"unknown command", []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"unknown flag", []string{"info", "--bogus", "x"}, ExitUsage, "unknown flag"},
		{"missing argument", []string{"info"}, ExitUsage, "accepts 1 arg"},
		{"info without claims", []string{"info", "nosuchpkg"}, ExitMismatch, "no claims for nosuchpkg"},
		{"garbage claims are rejected", []string{"claims", "import", garbage}, ExitUsage, "rejected"},
		{"missing claims file", []string{"claims", "import", "/nonexistent"}, ExitUsage, "no such file"},
		{"bad opinion is a lint error", []string{"opinion", "lint", badOpinion}, ExitUsage, ""},
		{"good opinions lint", []string{"opinion", "lint"}, ExitOK, ""},
		{"unknown opinion", []string{"opinion", "show", "hello/nope"}, ExitUsage, "nope"},
		{"verify a non-deb", []string{"verify", "--no-rebuild", garbage}, ExitMismatch, "not an ar archive"},
		{"verify a missing file", []string{"verify", "/nonexistent.deb"}, ExitUsage, "no such file"},
		{"peers without daemon", []string{"peers"}, ExitEnv, "not running"},
		{"trust of an unknown key", []string{"key", "trust", "0123456789ABCDEF0123456789ABCDEF01234567"}, ExitUsage, ""},
		{"trust level nobody can set", []string{"key", "trust", "0123456789ABCDEF0123456789ABCDEF01234567", "own"}, ExitUsage, "want trusted, unvetted or distrusted"},
		{"group without subcommand", []string{"key"}, ExitUsage, "needs a subcommand"},
		{"unknown subcommand", []string{"claims", "frob"}, ExitUsage, "unknown command \"frob\""},
		{"usage errors point to --help", []string{"info", "--bogus"}, ExitUsage, "--help"},
		{"an explicit socket must answer", []string{"--socket", filepath.Join(dd, "nobody.sock"), "info", "hello"}, ExitEnv, "lebowskid is not running"},
		{"version", []string{"--version"}, ExitOK, "lebowski version"},
		{"status without daemon", []string{"status"}, ExitOK, "not running"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			code, out, errOut := run(t, dd, tc.args...)
			require.Equal(t, tc.code, code, "stdout %q stderr %q", out, errOut)
			if tc.msg != "" {
				require.Contains(t, out+errOut, tc.msg)
			}
		})
	}
}

func TestCLIKeyGenExport(t *testing.T) {
	dd := t.TempDir()
	code, out, _ := run(t, dd, "--json", "key", "gen")
	require.Equal(t, ExitOK, code)
	var g struct {
		Fingerprint string
		Created     bool
	}
	require.NoError(t, json.Unmarshal([]byte(out), &g))
	require.True(t, g.Created)
	fi, err := os.Stat(filepath.Join(dd, "builder.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	code, out, _ = run(t, dd, "key", "gen")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "already exists")
	code, out, _ = run(t, dd, "key", "export")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "BEGIN PGP PUBLIC KEY BLOCK")
	pub := filepath.Join(t.TempDir(), "pub.asc")
	require.NoError(t, os.WriteFile(pub, []byte(out), 0o644))
	other := t.TempDir()
	code, out, _ = run(t, other, "key", "import", "--trust", "trusted", pub)
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, g.Fingerprint)
	code, out, _ = run(t, other, "--json", "key", "list")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, `"trust": "trusted"`)
}

// key certify / revoke / announce without a daemon: stored locally, the
// CLI says nothing was published; announce needs the daemon.
func TestCLIKeyCertifyRevokeAnnounce(t *testing.T) {
	dd := t.TempDir()
	code, out, _ := run(t, dd, "--json", "key", "gen")
	require.Equal(t, ExitOK, code)
	var own struct{ Fingerprint string }
	require.NoError(t, json.Unmarshal([]byte(out), &own))
	other := attesttest.Fresh(t, 1)[0]
	arm, err := other.ArmoredPublicKey()
	require.NoError(t, err)
	pub := filepath.Join(t.TempDir(), "other.asc")
	require.NoError(t, os.WriteFile(pub, []byte(arm), 0o644))
	code, _, _ = run(t, dd, "key", "import", pub)
	require.Equal(t, ExitOK, code)

	code, out, errOut := run(t, dd, "key", "certify", strings.ToLower(other.Fingerprint()))
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "certified "+other.Fingerprint()+": certified via "+own.Fingerprint[:8])
	require.Contains(t, errOut, "nothing was published")
	code, out, _ = run(t, dd, "key", "list")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "certified via")
	// info shows the path beside the certified builder's claim.
	cp := filepath.Join(t.TempDir(), "claim.jsonl")
	require.NoError(t, os.WriteFile(cp, attesttest.Wire(t, attesttest.Claim(t, other)), 0o644))
	code, _, errOut = run(t, dd, "claims", "import", cp)
	require.Equal(t, ExitOK, code, errOut)
	code, out, _ = run(t, dd, "info", "hello")
	require.Equal(t, ExitOK, code)
	require.Regexp(t, other.Fingerprint()[:16]+`… +certified via `+own.Fingerprint[:8], out)

	for _, args := range [][]string{
		{"key", "certify", "nothex"},
		{"key", "certify", strings.Repeat("AB", 20)},
		{"key", "certify", own.Fingerprint},
		{"key", "revoke", "--successor", "xyz"},
		{"key", "revoke", "--successor", own.Fingerprint},
		{"key", "announce", "zz"},
	} {
		code, _, errOut := run(t, dd, args...)
		require.Equal(t, ExitUsage, code, "%v: %s", args, errOut)
	}
	code, _, errOut = run(t, dd, "key", "announce")
	require.Equal(t, ExitEnv, code)
	require.Contains(t, errOut, "needs a running lebowskid")

	code, out, errOut = run(t, dd, "--json", "key", "revoke", "--successor", other.Fingerprint(), "--reason", "rotation test")
	require.Equal(t, ExitOK, code, errOut)
	var res struct {
		Fingerprint string
		Trust       string
		Published   bool
		Revocation  struct{ Reason, Successor, Text string }
		RotatedTo   string `json:"rotated_to"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, own.Fingerprint, res.Fingerprint)
	require.Equal(t, "distrusted", res.Trust)
	require.False(t, res.Published)
	require.Equal(t, "superseded", res.Revocation.Reason)
	require.Equal(t, other.Fingerprint(), res.Revocation.Successor)
	require.Empty(t, res.RotatedTo, "the old key's certification of its successor no longer counts: the successor does not vote here")
	code, out, _ = run(t, dd, "key", "list")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "not counted: it must vote here and certify this key")
	code, _, _ = run(t, dd, "key", "trust", other.Fingerprint())
	require.Equal(t, ExitOK, code)
	code, out, _ = run(t, dd, "key", "list")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "not counted", "the successor votes now but has not acknowledged the rotation")
	// The successor acknowledges the rotation (what `key certify OLD` on
	// the successor's node, or `key rotate`, does): the rotation counts.
	code, out, errOut = run(t, dd, "key", "export", own.Fingerprint)
	require.Equal(t, ExitOK, code, errOut)
	e, err := attest.ParsePublicKey([]byte(out))
	require.NoError(t, err)
	require.NoError(t, attest.AcknowledgeRotation(other, e))
	ack, err := attest.ArmorPublicKey(e)
	require.NoError(t, err)
	ackPath := filepath.Join(t.TempDir(), "acknowledged.asc")
	require.NoError(t, os.WriteFile(ackPath, []byte(ack), 0o644))
	code, _, errOut = run(t, dd, "key", "import", "--trust", "trusted", ackPath)
	require.Equal(t, ExitOK, code, errOut)
	code, out, _ = run(t, dd, "key", "list")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "earlier claims count as "+other.Fingerprint()[:8])
	// A revoked key signs nothing.
	code, _, errOut = run(t, dd, "key", "certify", other.Fingerprint())
	require.Equal(t, ExitEnv, code)
	require.Contains(t, errOut, "was revoked")
}

// `store compact` rewrites the store and everything reads as before; it
// refuses a data dir without a node and a store another process holds.
func TestCLIStoreCompact(t *testing.T) {
	dd := t.TempDir()
	p, _ := signedClaims(t, t.TempDir(), 3, sum("good deb"))
	code, _, errOut := run(t, dd, "claims", "import", p)
	require.Equal(t, ExitOK, code, errOut)
	_, before, _ := run(t, dd, "--json", "claims", "list", "hello")

	code, out, errOut := run(t, dd, "store", "compact")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "compacted "+filepath.Join(dd, "store.db"))
	require.Contains(t, out, "3 claims")
	code, out, errOut = run(t, dd, "--json", "store", "compact")
	require.Equal(t, ExitOK, code, errOut)
	var res struct {
		BytesBefore int64 `json:"bytes_before"`
		BytesAfter  int64 `json:"bytes_after"`
		Claims      int   `json:"claims"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, 3, res.Claims)
	require.Positive(t, res.BytesAfter)
	_, after, _ := run(t, dd, "--json", "claims", "list", "hello")
	require.JSONEq(t, before, after)

	code, _, errOut = run(t, t.TempDir(), "store", "compact")
	require.Equal(t, ExitEnv, code, "no node in an empty data dir")
	require.Contains(t, errOut, "lebowski key gen")

	st, err := store.Open(filepath.Join(dd, "store.db"))
	require.NoError(t, err)
	defer st.Close()
	code, _, errOut = run(t, dd, "store", "compact")
	require.Equal(t, ExitEnv, code)
	require.Contains(t, errOut, "stop lebowskid first")
}
