package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

const crashEnv = "LEBOWSKI_STORE_CRASH_CHILD"

// TestHelperIngestChild is not a test: TestCrashSafety runs the test binary
// with crashEnv=<db path>,<seed> and this function ingests claims until it
// is killed, printing "ack <id>" only after Ingest returned.
func TestHelperIngestChild(t *testing.T) {
	arg := os.Getenv(crashEnv)
	if arg == "" {
		t.Skip("helper process for TestCrashSafety")
	}
	path, seedStr, _ := strings.Cut(arg, ",")
	seed, _ := strconv.ParseUint(seedStr, 10, 64)
	s, err := Open(path, WithTimeout(5*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	id, err := attest.GenerateIdentity("crash", "crash@example.org")
	if err != nil {
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	fmt.Fprintln(out, "ready")
	out.Flush()
	// Several writers so that group commits of different sizes happen, plus
	// a blob writer.
	for g := 0; g < 4; g++ {
		go func(g int) {
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for i := 0; ; i++ {
				n := 1 + rng.IntN(20)
				batch := make([]*attest.Claim, 0, n)
				for j := 0; j < n; j++ {
					sp := spec{pkg: fmt.Sprintf("pkg%d", rng.IntN(5)), recipe: rng.IntN(50), variant: rng.IntN(2), ts: int(seed%1000)*100000 + g*10000 + i*30 + j}
					c, err := attest.Sign(id, statement(sp))
					if err != nil {
						os.Exit(3)
					}
					batch = append(batch, c)
				}
				res, err := s.Ingest(context.Background(), batch...)
				if err != nil {
					fmt.Fprintln(os.Stderr, "child ingest:", err)
					os.Exit(3)
				}
				mu.Lock()
				for _, r := range res {
					fmt.Fprintln(out, "ack", r.ID)
				}
				out.Flush()
				mu.Unlock()
			}
		}(g)
	}
	go func() {
		rng := rand.New(rand.NewPCG(seed, 99))
		for {
			data := make([]byte, 1+rng.IntN(3<<20))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			cid, err := s.PutBlob(data)
			if err != nil {
				fmt.Fprintln(os.Stderr, "child blob:", err)
				os.Exit(3)
			}
			mu.Lock()
			fmt.Fprintln(out, "blob", cid)
			out.Flush()
			mu.Unlock()
		}
	}()
	select {} // until SIGKILL
}

// TestCrashSafety kills a process that is ingesting, at random moments,
// then checks that the file opens, passes bbolt's consistency check, and
// holds every claim and blob the child acknowledged.
func TestCrashSafety(t *testing.T) {
	iterations := 20
	path := filepath.Join(t.TempDir(), "crash.db")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	acked := map[string]bool{}
	blobs := map[string]bool{}
	for it := 0; it < iterations; it++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperIngestChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", crashEnv, path, seed+uint64(it)))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// wait for "ready", then kill after a random delay
		if l, ok := <-lines; !ok || l != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child did not start: %q %s", l, stderr.String())
		}
		delay := time.Duration(rng.IntN(400)) * time.Millisecond
		killAt := time.After(delay)
		n := 0
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				n += record(t, l, acked, blobs)
			case <-killAt:
				// SIGKILL: no deferred code, no Close, mid-commit or not.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killAt = nil
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("child exited by itself (%v): %s", err, stderr.String())
		}
		t.Logf("iteration %d: killed after %s, %d acks this run, %d claims acked in total", it, delay, n, len(acked))
		checkAfterCrash(t, path, acked, blobs)
	}
	if len(acked) == 0 {
		t.Fatal("no claim was ever acknowledged: the test proves nothing")
	}
}

func record(t *testing.T, l string, acked, blobs map[string]bool) int {
	kind, id, _ := strings.Cut(l, " ")
	switch kind {
	case "ack":
		acked[id] = true
		return 1
	case "blob":
		blobs[id] = true
	default:
		t.Fatalf("child said %q", l)
	}
	return 0
}

func checkAfterCrash(t *testing.T, path string, acked, blobs map[string]bool) {
	t.Helper()
	s, err := Open(path, WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	if err := s.DB().View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for id := range acked {
		c, ok, err := s.Get(id)
		if err != nil || !ok {
			missing++
			t.Errorf("acknowledged claim %s: ok=%v err=%v", id, ok, err)
			continue
		}
		if c.ID != id || attest.ClaimID(c.Raw) != id {
			t.Errorf("claim %s reads back with a different id", id)
		}
	}
	for id := range blobs {
		if _, err := s.GetBlob(id); err != nil {
			t.Errorf("acknowledged blob %s: %v", id, err)
		}
	}
	if tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "blobs", ".tmp-*")); len(tmps) > 0 {
		t.Errorf("stale blob temp files not removed at open: %v", tmps)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Claims < uint64(len(acked)) {
		t.Errorf("stats count %d claims, %d acknowledged", st.Claims, len(acked))
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged claims lost", missing)
	}
}
