package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder/debfile/debfiletest"
	"github.com/lebowski-dist/lebowski/cmd/internal/cli"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/opinions"
)

const cliChildEnv = "LEBOWSKI_TEST_CLI_ARGS"

// TestHelperCLIChild is not a test: TestPublicSocketForGroupMembers runs
// the test binary as another user with this test selected, to run the
// real CLI (args as JSON in $LEBOWSKI_TEST_CLI_ARGS) as that user.
func TestHelperCLIChild(t *testing.T) {
	raw := os.Getenv(cliChildEnv)
	if raw == "" {
		t.Skip("helper process for TestPublicSocketForGroupMembers")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Println("bad args:", err)
		os.Exit(99)
	}
	code := cli.Main(args)
	fmt.Printf("\nEXIT=%d\n", code)
	os.Exit(0)
}

// TestPublicSocketForGroupMembers: the system daemon's public socket
// (root:<group> 0660) answers info and verify --no-rebuild for an
// ordinary user in the group who has no node of their own, refuses every
// write, and a user outside the group gets a clear permission error.
func TestPublicSocketForGroupMembers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the CLI as other users")
	}
	const gid = 4242 // any group: the socket is chowned to it by number
	exe, err := os.Executable()
	require.NoError(t, err)
	pub, err := os.MkdirTemp("", "lebowski-public-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(pub) })
	require.NoError(t, os.Chmod(pub, 0o755))
	child := filepath.Join(pub, "daemon.test")
	copyFile(t, exe, child, 0o755)
	sock := filepath.Join(pub, "run", "lebowskid.sock")

	td := startOne(t, func(c *config.Config) {
		c.Subscribe = nil
		c.PublicSocket = sock
		c.PublicSocketGroup = fmt.Sprint(gid)
	})
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o660), fi.Mode().Perm())
	require.Equal(t, uint32(gid), fi.Sys().(*syscall.Stat_t).Gid)

	// Three trusted builders attest a real hello/o3 .deb.
	op, err := opinions.Find(repoOpinions(t), "hello/o3")
	require.NoError(t, err)
	deb := debfiletest.Build(t, pub, debfiletest.Package{Name: "hello", Version: op.BinaryVersion().String()})
	require.NoError(t, os.Chmod(deb, 0o644))
	data, err := os.ReadFile(deb)
	require.NoError(t, err)
	api := dial(t, td)
	var claimFile []string
	for _, id := range attesttest.Fresh(t, 3) {
		c := attesttest.Claim(t, id, func(s *attest.Statement) {
			s.Opinion.CID = op.CID()
			s.Artifacts = []attest.Artifact{{Name: filepath.Base(deb), SHA256: attesttest.Hex(string(data))}}
		})
		w := attesttest.Wire(t, c)
		claimFile = append(claimFile, string(w))
		res, err := api.ImportClaims(context.Background(), [][]byte{w})
		require.NoError(t, err)
		require.Equal(t, "new", res[0].Status, res[0].Error)
		require.NoError(t, api.SetTrust(context.Background(), id.Fingerprint(), attest.TrustTrusted, "test"))
	}
	claims := filepath.Join(pub, "claims.jsonl")
	require.NoError(t, os.WriteFile(claims, []byte(strings.Join(claimFile, "\n")+"\n"), 0o644))
	// The opinions must be readable by the other users too.
	opDir := filepath.Join(pub, "opinions")
	require.NoError(t, exec.Command("cp", "-r", repoOpinions(t), opDir).Run())
	require.NoError(t, exec.Command("chmod", "-R", "a+rX", opDir).Run())

	asUser := func(groups []uint32, args ...string) (int, string) {
		t.Helper()
		b, _ := json.Marshal(append([]string{"--opinions", opDir}, args...))
		cmd := exec.Command(child, "-test.run=^TestHelperCLIChild$", "-test.count=1")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", cliChildEnv + "=" + string(b), "LEBOWSKI_SYSTEM_SOCKET=" + sock}
		cmd.Dir = pub
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: groups}}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		s := string(out)
		i := strings.LastIndex(s, "EXIT=")
		require.GreaterOrEqual(t, i, 0, s)
		var code int
		fmt.Sscanf(s[i:], "EXIT=%d", &code)
		return code, s[:i]
	}
	member := []uint32{gid}

	code, out := asUser(member, "info", "hello")
	require.Equal(t, cli.ExitOK, code, out)
	require.Contains(t, out, "3/3 trusted builders agree")

	code, out = asUser(member, "verify", "--no-rebuild", deb)
	require.Equal(t, cli.ExitOK, code, out)
	require.Contains(t, out, "SAFE TO INSTALL")

	code, out = asUser(member, "--json", "claims", "list", "hello")
	require.Equal(t, cli.ExitOK, code, out)
	require.Contains(t, out, `"builder"`)

	// Writes through the public socket are refused, whatever the client.
	code, out = asUser(member, "--socket", sock, "claims", "import", claims)
	require.Equal(t, cli.ExitEnv, code, out)
	require.Contains(t, out, "read-only")

	code, out = asUser(nil, "info", "hello")
	require.Equal(t, cli.ExitEnv, code, out)
	require.Contains(t, out, "permission denied")
	require.Contains(t, out, "adduser")
	t.Logf("outside the group: %s", strings.TrimSpace(out))
}
