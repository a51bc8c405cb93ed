package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EThreeDaemonsRealPodman builds the binaries and runs the demo
// (.ci/demo.sh): three lebowskid processes on loopback, each with its own
// cache, make their own images from hello/o3.lock, rebuild hello/o3 in
// podman, reach 3/3 consensus on one image digest and one artifact set,
// and verify answers SAFE TO INSTALL for the built .deb and DO NOT
// INSTALL for a tampered copy. Needs root, podman and
// the Debian mirror: run with LEBOWSKI_E2E=1 (./just test does).
func TestE2EThreeDaemonsRealPodman(t *testing.T) {
	if os.Getenv("LEBOWSKI_E2E") == "" {
		t.Skip("set LEBOWSKI_E2E=1 to run real podman rebuilds")
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/lebowski", "./cmd/lebowskid")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	work := t.TempDir()
	cmd := exec.Command("bash", ".ci/demo.sh")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "LEBOWSKI_BIN="+bin, "LEBOWSKI_DEMO_DIR="+work)
	if c := os.Getenv("LEBOWSKI_DEV_DIR"); c != "" {
		// Reuse the images and sources the builder tests made (./just
		// test runs them first); ./just demo keeps one cache per node.
		cmd.Env = append(cmd.Env, "LEBOWSKI_DEMO_CACHE="+c)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("demo output:\n%s", out)
	if err != nil {
		for _, n := range []string{"node1", "node2", "node3"} {
			if b, rerr := os.ReadFile(filepath.Join(work, n+".log")); rerr == nil {
				t.Logf("%s.log:\n%s", n, b)
			}
		}
		t.Fatalf("demo failed: %v", err)
	}
	s := string(out)
	// The three images were made independently and are the same.
	var digests []string
	for _, line := range strings.Split(s, "\n") {
		if _, d, ok := strings.Cut(line, ": sha256:"); ok && strings.HasPrefix(strings.TrimSpace(line), "node") {
			digests = append(digests, d)
		}
	}
	if len(digests) != 3 || digests[0] != digests[1] || digests[1] != digests[2] {
		t.Errorf("image digests of the three nodes: %v, want three equal", digests)
	}
	for _, want := range []string{"3/3 trusted builders agree", "Decision: SAFE TO INSTALL", "Decision: DO NOT INSTALL", "ERROR: Hash mismatch!", "  node1: sha256:", "  node2: sha256:", "  node3: sha256:",
		"red flag signed", "node2: Red flags:      1 (1 from trusted keys)", "node3: Red flags:      1 (1 from trusted keys)", "serving hello_2.10-3~o3+1_amd64.deb", "lebowski: ok hello 2.10-3~o3+1: SAFE TO INSTALL", "Hello, world!",
		"REFUSED hello 2.10-3~o3+1: DO NOT INSTALL", "REFUSED hello 2.10-3~o3+2: UNVERIFIED", "lebowski-demo-plain\t1.0-1", "APT CHECKS PASSED"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
