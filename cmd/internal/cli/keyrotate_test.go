package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

func keyList(t *testing.T, dd string) map[string]core.KeyInfo {
	t.Helper()
	code, out, errOut := run(t, dd, "--json", "key", "list")
	require.Equal(t, ExitOK, code, errOut)
	var keys []core.KeyInfo
	require.NoError(t, json.Unmarshal([]byte(out), &keys))
	m := map[string]core.KeyInfo{}
	for _, k := range keys {
		m[k.Fingerprint] = k
	}
	return m
}

// builderKey is the data dir's builder key.
func builderKey(t *testing.T, dd string) *attest.Identity {
	t.Helper()
	id, err := attest.LoadIdentity(filepath.Join(dd, "builder.key"))
	require.NoError(t, err)
	return id
}

// key rotate: a new builder key, the old one revoked naming it and kept
// beside it, the old key's claims counted as the new key's; bad cases
// refused with the documented exit codes.
func TestCLIKeyRotate(t *testing.T) {
	dd := t.TempDir()
	code, _, errOut := run(t, dd, "key", "rotate")
	require.Equal(t, ExitEnv, code)
	require.Contains(t, errOut, "lebowski key gen")
	code, _, _ = run(t, dd, "key", "rotate", "extra")
	require.Equal(t, ExitUsage, code)
	code, _, _ = run(t, dd, "key", "gen")
	require.Equal(t, ExitOK, code)
	first := builderKey(t, dd).Fingerprint()
	for _, bad := range []struct{ reason, want string }{{"two\nlines", "one line"}, {strings.Repeat("x", 500), "exceeds"}} {
		code, _, errOut = run(t, dd, "key", "rotate", "--reason", bad.reason)
		require.Equal(t, ExitUsage, code)
		require.Contains(t, errOut, bad.want)
		require.Equal(t, first, builderKey(t, dd).Fingerprint())
		_, err := os.Stat(filepath.Join(dd, "builder.key.next"))
		require.ErrorIs(t, err, os.ErrNotExist, "nothing generated for a bad reason")
	}
	dd = t.TempDir()

	code, _, errOut = run(t, dd, "key", "gen", "--name", "Node One")
	require.Equal(t, ExitOK, code, errOut)
	oldID := builderKey(t, dd)
	old := oldID.Fingerprint()
	// A claim signed by the old key before the rotation.
	cp := filepath.Join(t.TempDir(), "claim.jsonl")
	require.NoError(t, os.WriteFile(cp, attesttest.Wire(t, attesttest.Claim(t, oldID)), 0o644))
	code, _, errOut = run(t, dd, "claims", "import", cp)
	require.Equal(t, ExitOK, code, errOut)

	code, out, errOut := run(t, dd, "--json", "key", "rotate", "--reason", "yearly")
	require.Equal(t, ExitOK, code, errOut)
	var r rotation
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.Equal(t, old, r.Old)
	require.NotEqual(t, old, r.New)
	require.False(t, r.Resumed)
	require.Equal(t, r.New, builderKey(t, dd).Fingerprint())
	require.Equal(t, r.New, r.Revocation.Successor)
	require.Equal(t, "superseded", r.Revocation.Reason)
	require.Contains(t, r.Revocation.Text, "yearly")
	retired, err := attest.LoadIdentity(r.Retired)
	require.NoError(t, err, "the revoked private key is kept")
	require.Equal(t, old, retired.Fingerprint())
	fi, err := os.Stat(filepath.Join(dd, "builder.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	_, err = os.Stat(filepath.Join(dd, "builder.key.next"))
	require.ErrorIs(t, err, os.ErrNotExist)

	require.Equal(t, "Node One", builderKey(t, dd).Entity.PrimaryIdentity().UserId.Name, "the new key keeps the old key's name")
	keys := keyList(t, dd)
	require.Equal(t, attest.TrustOwn, keys[r.New].Trust)
	require.Equal(t, attest.TrustDistrusted, keys[old].Trust)
	require.Equal(t, r.New, keys[old].RotatedTo, "the old key's earlier claims count as the new key's")

	// The node signs with the new key: a build claim would be the new
	// key's; `info` counts the old claim as the new key's.
	code, out, errOut = run(t, dd, "info", "hello")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, r.New[:16])

	// Text output, and a second rotation from the new key.
	code, out, errOut = run(t, dd, "key", "rotate")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "revoked "+r.New+" (superseded by ")
	require.Contains(t, errOut, "lebowski key certify")
	newest := builderKey(t, dd).Fingerprint()
	require.NotEqual(t, r.New, newest)
	keys = keyList(t, dd)
	require.Equal(t, newest, keys[old].RotatedTo, "a chain of rotations: the first key's claims count as the newest key's")
	require.Equal(t, newest, keys[r.New].RotatedTo)
}

// A rotation cut short is finished by running it again, with the same
// new key: after the new key was written, and after the revocation.
func TestCLIKeyRotateResumes(t *testing.T) {
	// The stages a rotation can be cut short after (rotate's steps 1–4).
	for _, stage := range []string{"generated", "revoked", "kept", "installed"} {
		t.Run(stage, func(t *testing.T) {
			dd := t.TempDir()
			code, _, errOut := run(t, dd, "key", "gen")
			require.Equal(t, ExitOK, code, errOut)
			old := builderKey(t, dd).Fingerprint()
			bk, nk := filepath.Join(dd, "builder.key"), filepath.Join(dd, "builder.key.next")
			retired := filepath.Join(dd, "builder.key."+old+".revoked")
			next := attesttest.Fresh(t, 1)[0]
			require.NoError(t, next.Save(nk, false))
			if stage != "generated" {
				code, _, errOut = run(t, dd, "key", "revoke", "--successor", next.Fingerprint())
				require.Equal(t, ExitOK, code, errOut)
			}
			if stage == "kept" || stage == "installed" {
				require.NoError(t, os.Link(bk, retired))
			}
			if stage == "installed" {
				require.NoError(t, os.Link(nk, nk+".install"))
				require.NoError(t, os.Rename(nk+".install", bk))
			}
			code, out, errOut := run(t, dd, "--json", "key", "rotate")
			require.Equal(t, ExitOK, code, errOut)
			var r rotation
			require.NoError(t, json.Unmarshal([]byte(out), &r))
			require.True(t, r.Resumed)
			require.Equal(t, old, r.Old)
			require.Equal(t, retired, r.Retired)
			require.Equal(t, next.Fingerprint(), r.New)
			require.Equal(t, next.Fingerprint(), r.Revocation.Successor)
			require.Equal(t, next.Fingerprint(), builderKey(t, dd).Fingerprint())
			_, err := os.Stat(nk)
			require.ErrorIs(t, err, os.ErrNotExist, "finished: builder.key.next removed")
			kept, err := attest.LoadIdentity(retired)
			require.NoError(t, err)
			require.Equal(t, old, kept.Fingerprint())
			keys := keyList(t, dd)
			require.NotNil(t, keys[old].Revocation)
			require.Equal(t, next.Fingerprint(), keys[old].Revocation.Successor)
			require.Equal(t, attest.TrustOwn, keys[next.Fingerprint()].Trust)
			require.Len(t, keys, 2, "no third key generated")
		})
	}
	// A key revoked otherwise is not rotated: the operator generates a
	// new one.
	dd := t.TempDir()
	code, _, errOut := run(t, dd, "key", "gen")
	require.Equal(t, ExitOK, code, errOut)
	code, _, errOut = run(t, dd, "key", "revoke", "--reason", "retired")
	require.Equal(t, ExitOK, code, errOut)
	old := builderKey(t, dd).Fingerprint()
	code, _, errOut = run(t, dd, "key", "rotate")
	require.Equal(t, ExitEnv, code)
	require.Contains(t, errOut, "already revoked")
	require.Contains(t, errOut, "key gen --force")
	require.Equal(t, old, builderKey(t, dd).Fingerprint(), "builder.key is left alone")
}

// The new key keeps the owner of the key it replaces (a node run by
// another user, rotated by root), with key rotate and key gen --force.
func TestCLIKeyRotateKeepsOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to hand the key to another user")
	}
	dd := t.TempDir()
	code, _, errOut := run(t, dd, "key", "gen")
	require.Equal(t, ExitOK, code, errOut)
	require.NoError(t, os.Chown(filepath.Join(dd, "builder.key"), 65534, 65534))
	code, _, errOut = run(t, dd, "key", "rotate")
	require.Equal(t, ExitOK, code, errOut)
	fi, err := os.Stat(filepath.Join(dd, "builder.key"))
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	require.Equal(t, [2]uint32{65534, 65534}, [2]uint32{st.Uid, st.Gid})
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	// key gen --force too.
	code, _, errOut = run(t, dd, "key", "gen", "--force")
	require.Equal(t, ExitOK, code, errOut)
	fi, err = os.Stat(filepath.Join(dd, "builder.key"))
	require.NoError(t, err)
	st = fi.Sys().(*syscall.Stat_t)
	require.Equal(t, [2]uint32{65534, 65534}, [2]uint32{st.Uid, st.Gid})
}
