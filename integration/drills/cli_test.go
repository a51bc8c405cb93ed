package drills

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/opinions"
)

// loopbackDaemon starts one lebowskid --no-build on 127.0.0.1.
func loopbackDaemon(t *testing.T, trust []string) *daemon {
	t.Helper()
	needDrill(t)
	d := newDaemon(t, "solo", "", "/ip4/127.0.0.1/tcp/0")
	d.trust = trust
	d.start(t)
	return d
}

// TestDrillSybilInfo: 3 trusted builders agree; 1,000 fresh keys sign a
// malicious hash for the same recipe. `lebowski info` still shows the
// trusted consensus and names the flood as unvetted.
func TestDrillSybilInfo(t *testing.T) {
	needDrill(t)
	o := helloO3(t)
	src := sum("drill source")
	honest, evil := sum("honest deb"), sum("backdoored deb")
	trusted := attesttest.Fresh(t, 3)
	start := time.Now()
	sybils := attesttest.Fresh(t, 1000)
	t.Logf("1000 keys in %s", time.Since(start).Round(time.Millisecond))
	var fprs []string
	for _, id := range trusted {
		fprs = append(fprs, id.Fingerprint())
	}
	d := loopbackDaemon(t, fprs)
	now := time.Now().Add(-time.Minute)
	var good, flood []*attest.Claim
	for i, id := range trusted {
		c, err := attest.Sign(id, statement(o, src, honest, "trusted-peer-"+strconv.Itoa(i), now))
		require.NoError(t, err)
		good = append(good, c)
	}
	for i, id := range sybils {
		c, err := attest.Sign(id, statement(o, src, evil, "sybil-peer-"+strconv.Itoa(i), now))
		require.NoError(t, err)
		flood = append(flood, c)
	}
	dir := t.TempDir()
	writeClaims(t, filepath.Join(dir, "good.jsonl"), good)
	writeClaims(t, filepath.Join(dir, "flood.jsonl"), flood)
	code, r, errOut := d.importFile(t, filepath.Join(dir, "good.jsonl"))
	require.Equal(t, 0, code, errOut)
	start = time.Now()
	code, r, errOut = d.importFile(t, filepath.Join(dir, "flood.jsonl"))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 1000, r.Counts["new"])
	t.Logf("CLI imported the 1000-claim flood in %s", time.Since(start).Round(time.Millisecond))

	code, out, errOut := d.cli(t, "info", "hello", "--opinion", "o3")
	require.Equal(t, 0, code, errOut)
	t.Logf("lebowski info hello --opinion o3:\n%s", headLines(out, 6))
	require.Contains(t, out, "3/3 trusted builders agree (+1000 unvetted keys, not counted)")
	require.Contains(t, out, "██████░░░░ 6/10")
	require.Contains(t, out, honest)
	require.NotContains(t, out, "Recommendation: DO NOT INSTALL")
	rows := strings.Count(out, " unvetted  success ")
	reasons := out[strings.Index(out, "Reasons:"):]
	t.Logf("builder table rows for unvetted keys: %d; %s", rows, reasons)
	require.Contains(t, reasons, "1000 unvetted keys report other hashes (not counted)")
}

func headLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// TestDrillFutureAndReplayCLI: a claim dated in the future makes `claims
// import` exit 2 and is not stored; re-importing stored claims is a no-op.
func TestDrillFutureAndReplayCLI(t *testing.T) {
	d := loopbackDaemon(t, nil)
	o := helloO3(t)
	ids := attesttest.Fresh(t, 2)
	dir := t.TempDir()
	good, err := attest.Sign(ids[0], statement(o, sum("s"), sum("d"), "p", time.Now().Add(-time.Hour)))
	require.NoError(t, err)
	future, err := attest.Sign(ids[1], statement(o, sum("s"), sum("d"), "p", time.Now().Add(2*time.Hour)))
	require.NoError(t, err)
	writeClaims(t, filepath.Join(dir, "good.jsonl"), []*attest.Claim{good})
	writeClaims(t, filepath.Join(dir, "future.jsonl"), []*attest.Claim{future})
	writeClaims(t, filepath.Join(dir, "mixed.jsonl"), []*attest.Claim{good, future})

	code, _, errOut := d.cli(t, "claims", "import", filepath.Join(dir, "future.jsonl"))
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "future")
	require.Empty(t, d.claimIDs(t), "the future claim is not stored")

	code, out, errOut := d.cli(t, "claims", "import", filepath.Join(dir, "good.jsonl"))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "1 new")
	for range 2 {
		code, out, errOut = d.cli(t, "claims", "import", filepath.Join(dir, "good.jsonl"))
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "0 new, 1 duplicate")
	}
	code, out, _ = d.cli(t, "claims", "import", filepath.Join(dir, "mixed.jsonl"))
	require.Equal(t, 2, code, "one bad claim in a file: exit 2, the good ones are still processed")
	require.Contains(t, out, "1 duplicate")
	require.Contains(t, out, "1 rejected")
	require.Equal(t, map[string]bool{good.ID: true}, d.claimIDs(t))
}

// --- malicious opinions -----------------------------------------------------

// countingSocket is a unix socket that counts connections and closes them
// at once: a stand-in podman that tells whether the CLI tried to talk to
// podman at all.
func countingSocket(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	dir, err := os.MkdirTemp("", "lbw-podman-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, "podman.sock")
	ln, err := net.Listen("unix", p)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return p, &n
}

const validO3 = `name: %s
package: hello
summary: drill opinion
purity: pure-compilation
debian: {suite: bookworm, version: 2.10-3}
revision: 1
build:
  cflags: {append: ["-O3"]}
  cxxflags: {append: []}
  ldflags: {append: []}
  build_options: []
  configure_args: []
patches: []
source_date_epoch: null
`

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestDrillMaliciousOpinions: hostile opinion files are refused by
// opinions.Load (ErrInvalid) and by `lebowski opinion lint` and `lebowski
// build` with exit 2, before the CLI connects to podman, and none of the
// shell payloads runs.
func TestDrillMaliciousOpinions(t *testing.T) {
	needDrill(t)
	root := t.TempDir()
	ops := filepath.Join(root, "opinions")
	hello := filepath.Join(ops, "hello")
	require.NoError(t, os.MkdirAll(hello, 0o755))
	sentinel := filepath.Join(root, "pwned")
	inj := []string{
		"$(touch " + sentinel + ")",
		"`touch " + sentinel + "`",
		"x; touch " + sentinel,
		"x | touch " + sentinel,
		"x && touch " + sentinel,
		"x\ntouch " + sentinel,
	}
	q := func(s string) string { return strconv.Quote(s) } // YAML accepts JSON-style double-quoted strings
	base := func(name string) string { return fmt.Sprintf(validO3, name) }
	passwd, _ := os.ReadFile("/etc/passwd")
	bigPatch := []byte("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+" + strings.Repeat("b", 5<<20) + "\n")
	patchOp := func(name, path, sum string) string {
		s := strings.Replace(base(name), "purity: pure-compilation", "purity: patches", 1)
		return strings.Replace(s, "patches: []", fmt.Sprintf("patches:\n  - path: %s\n    sha256: %s", q(path), sum), 1)
	}
	type tc struct {
		desc  string
		name  string // opinion name = file hello/<name>.yaml (a valid name)
		body  string
		setup func(t *testing.T)
		want  string // in the error: the refusal is for the intended reason
		// loads marks free text that is accepted by design (summary): it
		// is written into a file (the changelog entry), never into a shell
		// command, so the build gets as far as podman.
		loads bool
	}
	cases := []tc{
		{desc: "patch path traversal", name: "trav", body: patchOp("trav", "../../../../etc/passwd", sha(passwd)), want: "leaves the opinion's directory"},
		{desc: "absolute patch path", name: "abs", body: patchOp("abs", "/etc/passwd", sha(passwd)), want: "is absolute"},
		{desc: "patch is a symlink to /etc/passwd", name: "symp", body: patchOp("symp", "symp/fix.patch", sha(passwd)), want: "is a symlink", setup: func(t *testing.T) {
			require.NoError(t, os.MkdirAll(filepath.Join(hello, "symp"), 0o755))
			require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(hello, "symp", "fix.patch")))
		}},
		{desc: "patch directory is a symlink to /etc", name: "symd", body: patchOp("symd", "symd/passwd", sha(passwd)), want: "is a symlink", setup: func(t *testing.T) {
			require.NoError(t, os.Symlink("/etc", filepath.Join(hello, "symd")))
		}},
		{desc: "opinion file is a symlink", name: "link", want: "not a regular file", setup: func(t *testing.T) {
			other := filepath.Join(root, "elsewhere.yaml")
			require.NoError(t, os.WriteFile(other, []byte(base("link")), 0o644))
			require.NoError(t, os.Symlink(other, filepath.Join(hello, "link.yaml")))
		}},
		{desc: "huge opinion file (10 MiB)", name: "huge", body: base("huge") + "# " + strings.Repeat("x", 10<<20) + "\n", want: "larger than"},
		{desc: "huge patch (5 MiB, right sha256)", name: "bigp", body: patchOp("bigp", "bigp/big.patch", sha(bigPatch)), want: "more than", setup: func(t *testing.T) {
			require.NoError(t, os.MkdirAll(filepath.Join(hello, "bigp"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(hello, "bigp", "big.patch"), bigPatch, 0o644))
		}},
		{desc: "patch with a wrong sha256", name: "wsha", body: patchOp("wsha", "wsha/fix.patch", strings.Repeat("0", 64)), want: "sha256 mismatch", setup: func(t *testing.T) {
			require.NoError(t, os.MkdirAll(filepath.Join(hello, "wsha"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(hello, "wsha", "fix.patch"), []byte("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n"), 0o644))
		}},
		{desc: "YAML alias bomb", name: "bomb", body: "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n" + base("bomb")},
	}
	// Shell injection in every string field.
	fields := []struct{ field, old, tmpl string }{
		{"name", "name: %s", "name: %s"},
		{"package", "package: hello", "package: %s"},
		{"summary", "summary: drill opinion", "summary: %s"},
		{"purity", "purity: pure-compilation", "purity: %s"},
		{"debian.suite", "suite: bookworm", "suite: %s"},
		{"debian.version", "version: 2.10-3", "version: %s"},
		{"revision", "revision: 1", "revision: %s"},
		{"build.cflags", `cflags: {append: ["-O3"]}`, "cflags: {append: [%s]}"},
		{"build.cxxflags", "cxxflags: {append: []}", "cxxflags: {append: [%s]}"},
		{"build.ldflags", "ldflags: {append: []}", "ldflags: {append: [%s]}"},
		{"build.build_options", "build_options: []", "build_options: [%s]"},
		{"build.configure_args", "configure_args: []", "configure_args: [%s]"},
		{"source_date_epoch", "source_date_epoch: null", "source_date_epoch: %s"},
	}
	for i, f := range fields {
		for j, payload := range inj {
			name := fmt.Sprintf("inj%dn%d", i, j)
			body := base(name)
			if f.field == "name" {
				body = strings.Replace(body, "name: "+name, fmt.Sprintf(f.tmpl, q(name+payload)), 1)
			} else {
				body = strings.Replace(body, f.old, fmt.Sprintf(f.tmpl, q(payload)), 1)
			}
			loads := f.field == "summary" && !strings.Contains(payload, "\n")
			cases = append(cases, tc{desc: fmt.Sprintf("shell injection in %s (%d)", f.field, j), name: name, body: body, want: f.field, loads: loads})
		}
	}
	for j, payload := range inj {
		name := fmt.Sprintf("injp%d", j)
		cases = append(cases, tc{desc: fmt.Sprintf("shell injection in patches[0].path (%d)", j), name: name, body: patchOp(name, "injp/"+payload, sha(passwd)), want: "patches[0].path"})
	}
	for _, c := range cases {
		if c.body != "" {
			require.NoError(t, os.WriteFile(filepath.Join(hello, c.name+".yaml"), []byte(c.body), 0o644))
		}
		if c.setup != nil {
			c.setup(t)
		}
	}
	// A valid opinion in the same directory: the control.
	require.NoError(t, os.WriteFile(filepath.Join(hello, "good.yaml"), []byte(base("good")), 0o644))
	_, err := opinions.Load(filepath.Join(hello, "good.yaml"))
	require.NoError(t, err, "control opinion loads")

	cli, _ := binaries(t)
	sock, conns := countingSocket(t)
	dataDir := t.TempDir()
	build := func(t *testing.T, name string) (int, string) {
		code, out, errOut := run(t, "", time.Minute, cli, "--data-dir", dataDir, "--opinions", ops,
			"build", "hello", "--opinion", name, "--podman-url", "unix://"+sock)
		return code, out + errOut
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			o, err := opinions.Load(filepath.Join(hello, c.name+".yaml"))
			if c.loads {
				require.NoError(t, err)
				before := conns.Load()
				code, msg := build(t, c.name)
				require.Equal(t, 3, code, "reaches the (fake, broken) podman: %s", msg)
				require.Greater(t, conns.Load(), before)
				require.NoFileExists(t, sentinel, "a shell payload ran")
				t.Logf("accepted as text: summary %q", o.Summary)
				return
			}
			require.Error(t, err)
			require.True(t, errors.Is(err, opinions.ErrInvalid), "opinions.Load: want ErrInvalid, got %v", err)
			require.Contains(t, err.Error(), c.want, "refused for the intended reason")
			code, out, errOut := run(t, "", time.Minute, cli, "opinion", "lint", filepath.Join(hello, c.name+".yaml"))
			require.Equal(t, 2, code, "lint: %s%s", out, errOut)
			before := conns.Load()
			code, msg := build(t, c.name)
			require.Equal(t, 2, code, "build must refuse the opinion with exit 2: %s", msg)
			require.Equal(t, before, conns.Load(), "build connected to podman before refusing the opinion")
			require.NoFileExists(t, sentinel, "a shell payload ran")
			msg = firstLine(strings.TrimPrefix(err.Error(), hello+"/"))
			if len(msg) > 150 {
				msg = msg[:150] + "…"
			}
			t.Logf("refused: %s", msg)
		})
	}
	t.Run("control: a valid opinion reaches podman", func(t *testing.T) {
		code, msg := build(t, "good")
		require.Equal(t, 3, code, "an unusable podman is an environment error: %s", msg)
		require.Greater(t, conns.Load(), int32(0), "the valid opinion got as far as podman")
	})
	t.Run("shell injection in the package argument", func(t *testing.T) {
		before := conns.Load()
		code, out, errOut := run(t, "", time.Minute, cli, "--data-dir", dataDir, "--opinions", ops,
			"build", "hello;touch "+sentinel, "--podman-url", "unix://"+sock)
		t.Logf("vanilla build of %q: exit %d, podman connections %d: %s", "hello;touch …", code, conns.Load()-before, firstLine(out+errOut))
		require.NoFileExists(t, sentinel)
		require.NotEqual(t, 0, code)
	})
	require.NoFileExists(t, sentinel)
}
