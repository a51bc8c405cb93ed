package drills

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/p2p"
)

const drillEnv = "LEBOWSKI_DRILL"

var bins struct {
	once      sync.Once
	dir       string
	err       error
	lebowski  string
	lebowskid string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// needDrill skips unless LEBOWSKI_DRILL=1.
func needDrill(t *testing.T) {
	t.Helper()
	if os.Getenv(drillEnv) != "1" {
		t.Skip("hardening drill: set LEBOWSKI_DRILL=1 to run it (builds the binaries; see docs/SECURITY.md)")
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../..")
	require.NoError(t, err)
	return p
}

// binaries builds lebowski and lebowskid once per test binary.
func binaries(t *testing.T) (cli, daemon string) {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "lebowski-drill-bin-")
		if bins.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", bins.dir+"/", "./cmd/lebowski", "./cmd/lebowskid")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			bins.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		bins.lebowski = filepath.Join(bins.dir, "lebowski")
		bins.lebowskid = filepath.Join(bins.dir, "lebowskid")
	})
	require.NoError(t, bins.err)
	return bins.lebowski, bins.lebowskid
}

// run executes a command (inside netns ns unless ns is "") and returns its
// exit code, stdout and stderr. A command running longer than timeout is
// killed and fails the test.
func run(t *testing.T, ns string, timeout time.Duration, name string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if ns != "" {
		args = append([]string{"netns", "exec", ns, name}, args...)
		name = "ip"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out after %s\nstderr: %s", name, args, timeout, errOut.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return code, out.String(), errOut.String()
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	code, out, errOut := run(t, "", time.Minute, name, args...)
	require.Equal(t, 0, code, "%s %s: %s%s", name, strings.Join(args, " "), out, errOut)
	return out
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func helloO3(t *testing.T) *opinions.Opinion {
	t.Helper()
	o, err := opinions.Find(filepath.Join(repoRoot(t), "opinions"), "hello/o3")
	require.NoError(t, err)
	return o
}

// statement is a success claim for hello/o3 (the real opinion CID) about
// the recipe with the given source hash, reporting artifact hash sha.
func statement(o *opinions.Opinion, src, sha, peerID string, ts time.Time) *attest.Statement {
	return &attest.Statement{Type: attest.TypeRebuildV1, Package: "hello", Version: o.BinaryVersion().String(), DebianVersion: o.Debian.Version,
		Suite: o.Debian.Suite, Arch: "amd64", Opinion: attest.OpinionRef{Name: o.Name, CID: o.CID(), Purity: o.Purity}, DebianSourceSHA256: src, ContainerDigest: "sha256:" + sum("drill image"),
		Result: attest.ResultSuccess, Artifacts: []attest.Artifact{{Name: "hello_" + o.BinaryVersion().String() + "_amd64.deb", SHA256: sha}},
		PeerID: peerID, Timestamp: ts}
}

// uniqueClaims signs n claims, each about its own recipe (so no key ever
// equivocates), round-robin over ids.
func uniqueClaims(t *testing.T, ids []*attest.Identity, n int, tag string) []*attest.Claim {
	t.Helper()
	o := helloO3(t)
	out := make([]*attest.Claim, n)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	now := time.Now().Add(-time.Minute)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				st := statement(o, sum(fmt.Sprintf("%s src %d", tag, i)), sum(fmt.Sprintf("%s deb %d", tag, i)), "drill-peer", now)
				c, err := attest.Sign(ids[i%len(ids)], st)
				if err != nil {
					errs <- err
					return
				}
				out[i] = c
			}
		}()
	}
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)
	return out
}

// writeClaims writes wire envelopes, one per line.
func writeClaims(t *testing.T, path string, claims []*attest.Claim) {
	t.Helper()
	var b bytes.Buffer
	for _, c := range claims {
		w, err := c.Wire()
		require.NoError(t, err)
		b.Write(w)
		b.WriteByte('\n')
	}
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
}

func idSet(claims ...[]*attest.Claim) map[string]bool {
	out := map[string]bool{}
	for _, cs := range claims {
		for _, c := range cs {
			out[c.ID] = true
		}
	}
	return out
}

// --- daemons ---------------------------------------------------------------

// daemon is one lebowskid process (inside netns ns unless "").
type daemon struct {
	name   string
	ns     string
	dir    string
	listen string
	boot   []string
	trust  []string
	id     peer.ID
	cmd    *exec.Cmd
	done   chan struct{}
	logf   *os.File
}

func newDaemon(t *testing.T, name, ns, listen string) *daemon {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	sk, err := p2p.LoadOrCreateIdentity(filepath.Join(dir, "peer.key"))
	require.NoError(t, err)
	id, err := peer.IDFromPrivateKey(sk)
	require.NoError(t, err)
	return &daemon{name: name, ns: ns, dir: dir, listen: listen, id: id}
}

func (d *daemon) socket() string { return filepath.Join(d.dir, "lebowskid.sock") }
func (d *daemon) addr() string   { return d.listen + "/p2p/" + d.id.String() }

// start runs lebowskid --no-build and waits for its API socket.
func (d *daemon) start(t *testing.T) {
	t.Helper()
	_, bin := binaries(t)
	args := []string{"--data-dir", d.dir, "--no-build", "--no-mdns", "--listen", d.listen, "--sync-interval", "2s",
		"--subscribe", "hello/o3", "--opinions", filepath.Join(repoRoot(t), "opinions"), "--log-level", "info"}
	for _, b := range d.boot {
		args = append(args, "--bootstrap", b)
	}
	for _, f := range d.trust {
		args = append(args, "--trust", f)
	}
	name := bin
	if d.ns != "" {
		args = append([]string{"netns", "exec", d.ns, bin}, args...)
		name = "ip"
	}
	logf, err := os.OpenFile(filepath.Join(d.dir, "lebowskid.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	d.logf = logf
	d.cmd = exec.Command(name, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	require.NoError(t, d.cmd.Start())
	d.done = make(chan struct{})
	cmd, done := d.cmd, d.done
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", d.socket()); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("%s exited at start:\n%s", d.name, d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no API socket after 30s:\n%s", d.name, d.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (SIGKILL after 20 s). Idempotent.
func (d *daemon) stop(t *testing.T) {
	if d.cmd == nil {
		return
	}
	select {
	case <-d.done:
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20s after SIGTERM; killing it", d.name)
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	}
	d.cmd = nil
	d.logf.Close()
	if t.Failed() {
		t.Logf("%s log (tail):\n%s", d.name, d.logTail())
	}
}

// kill9 SIGKILLs the daemon (ip netns exec execs it: the pid is lebowskid's).
func (d *daemon) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
	<-d.done
	d.cmd = nil
	d.logf.Close()
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "lebowskid.log"))
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// cli runs `lebowski --data-dir <dir> args...` (inside the daemon's netns).
func (d *daemon) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	bin, _ := binaries(t)
	return run(t, d.ns, 2*time.Minute, bin, append([]string{"--data-dir", d.dir, "--opinions", filepath.Join(repoRoot(t), "opinions")}, args...)...)
}

// claimIDs lists the daemon's claims through `lebowski --json claims list`.
func (d *daemon) claimIDs(t *testing.T) map[string]bool {
	t.Helper()
	code, out, errOut := d.cli(t, "--json", "claims", "list")
	require.Equal(t, 0, code, "%s claims list: %s", d.name, errOut)
	var rows []struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	ids := make(map[string]bool, len(rows))
	for _, r := range rows {
		ids[r.ID] = true
	}
	return ids
}

// importResult is `lebowski --json claims import`'s output.
type importResult struct {
	Results []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"results"`
	Counts map[string]int `json:"counts"`
}

func (d *daemon) importFile(t *testing.T, path string) (int, importResult, string) {
	t.Helper()
	code, out, errOut := d.cli(t, "--json", "claims", "import", path)
	var r importResult
	if code == 0 || code == 2 {
		_ = json.Unmarshal([]byte(out), &r)
	}
	return code, r, errOut
}

func (d *daemon) peers(t *testing.T) int {
	t.Helper()
	code, out, _ := d.cli(t, "--json", "peers")
	if code != 0 {
		return -1
	}
	var r struct {
		Peers []json.RawMessage `json:"peers"`
	}
	if json.Unmarshal([]byte(out), &r) != nil {
		return -1
	}
	return len(r.Peers)
}

func missing(have, want map[string]bool) []string {
	var out []string
	for id := range want {
		if !have[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
