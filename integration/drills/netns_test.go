package drills

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/store"
)

// cluster is n network namespaces, each with one veth (eth0, 10.99.0.i+1/24)
// whose peer is enslaved to a bridge living in its own namespace. Nothing
// is created in the host's namespace; everything is deleted in t.Cleanup.
type cluster struct {
	br    string   // bridge namespace
	ns    []string // node namespaces
	veths []string // bridge-side veth names
	nodes []*daemon
}

// needNetns skips unless the drill is enabled, we are root and `ip netns`
// works.
func needNetns(t *testing.T) {
	t.Helper()
	needDrill(t)
	if os.Getuid() != 0 {
		t.Skip("network-namespace drill needs root (ip netns); run as root with LEBOWSKI_DRILL=1")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network-namespace drill needs `ip` (apt-get install iproute2)")
	}
	probe := fmt.Sprintf("lbw%dprobe", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("`ip netns add` does not work here (%v: %s); the network-namespace drill needs CAP_SYS_ADMIN and a writable /run/netns", err, out)
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	needNetns(t)
	pid := os.Getpid()
	c := &cluster{br: fmt.Sprintf("lbw%dbr", pid)}
	t.Cleanup(func() { // registered first: runs after the daemons stopped
		for _, ns := range append(c.ns, c.br) {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("ip netns del %s: %v %s", ns, err, out)
			}
		}
	})
	mustRun(t, "ip", "netns", "add", c.br)
	mustRun(t, "ip", "-n", c.br, "link", "set", "lo", "up")
	mustRun(t, "ip", "-n", c.br, "link", "add", "br0", "type", "bridge")
	mustRun(t, "ip", "-n", c.br, "link", "set", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("lbw%dn%d", pid, i)
		veth := fmt.Sprintf("lb%dv%d", pid, i)
		mustRun(t, "ip", "netns", "add", ns)
		c.ns = append(c.ns, ns)
		c.veths = append(c.veths, veth)
		mustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
		mustRun(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", veth, "netns", c.br)
		mustRun(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("10.99.0.%d/24", i+1), "dev", "eth0")
		mustRun(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		mustRun(t, "ip", "-n", c.br, "link", "set", veth, "master", "br0")
		mustRun(t, "ip", "-n", c.br, "link", "set", veth, "up")
	}
	// One lebowskid per namespace, every node bootstrapping from all others.
	for i, ns := range c.ns {
		c.nodes = append(c.nodes, newDaemon(t, fmt.Sprintf("node%d", i), ns, fmt.Sprintf("/ip4/10.99.0.%d/tcp/4001", i+1)))
	}
	for i, d := range c.nodes {
		for j, o := range c.nodes {
			if i != j {
				d.boot = append(d.boot, o.addr())
			}
		}
	}
	return c
}

func (c *cluster) start(t *testing.T) {
	t.Helper()
	for _, d := range c.nodes {
		d.start(t)
	}
	took := attesttest.Eventually(t, 60*time.Second, "every node connected to every other", func() bool {
		for _, d := range c.nodes {
			if d.peers(t) < len(c.nodes)-1 {
				return false
			}
		}
		return true
	})
	t.Logf("%d lebowskid in separate network namespaces, fully connected after %s", len(c.nodes), took.Round(time.Millisecond))
}

// setLink cuts (false) or restores (true) node i's link at the bridge.
func (c *cluster) setLink(t *testing.T, i int, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	mustRun(t, "ip", "-n", c.br, "link", "set", c.veths[i], state)
}

// waitConverged waits until every node in nodes lists exactly want.
func waitConverged(t *testing.T, nodes []*daemon, want map[string]bool, d time.Duration, what string) time.Duration {
	t.Helper()
	var last []int
	defer func() {
		if t.Failed() {
			t.Logf("claim counts at the deadline: %v (want %d)", last, len(want))
		}
	}()
	return attesttest.Eventually(t, d, what, func() bool {
		last = last[:0]
		ok := true
		for _, n := range nodes {
			have := n.claimIDs(t)
			last = append(last, len(have))
			if !sameSet(have, want) {
				ok = false
			}
		}
		return ok
	})
}

// TestDrillPartitionHeals: 4 lebowskid in separate network namespaces.
// Node 3's link is cut; both sides keep importing claims; after the link
// comes back every node converges to the union.
func TestDrillPartitionHeals(t *testing.T) {
	c := newCluster(t, 4)
	c.start(t)
	dir := t.TempDir()
	ids := attesttest.Fresh(t, 8)
	before := uniqueClaims(t, ids, 20, "before")
	majority := uniqueClaims(t, ids, 50, "majority")
	minority := uniqueClaims(t, ids, 50, "minority")
	write := func(name string, cs []*attest.Claim) string {
		p := filepath.Join(dir, name)
		writeClaims(t, p, cs)
		return p
	}

	code, r, errOut := c.nodes[0].importFile(t, write("before.jsonl", before))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 20, r.Counts["new"])
	took := waitConverged(t, c.nodes, idSet(before), 60*time.Second, "the first 20 claims everywhere")
	t.Logf("connected: 20 claims imported at node 0 reached all 4 nodes in %s", took.Round(time.Millisecond))

	c.setLink(t, 3, false)
	cut := time.Now()
	code, r, errOut = c.nodes[1].importFile(t, write("majority.jsonl", majority))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 50, r.Counts["new"])
	code, r, errOut = c.nodes[3].importFile(t, write("minority.jsonl", minority))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 50, r.Counts["new"])
	waitConverged(t, c.nodes[:3], idSet(before, majority), 60*time.Second, "the majority side to converge")
	// Hold the partition well past several sync intervals (and yamux's
	// write timeout) before checking that nothing crossed it.
	time.Sleep(time.Until(cut.Add(15 * time.Second)))
	require.True(t, sameSet(c.nodes[3].claimIDs(t), idSet(before, minority)), "the cut-off node holds only its own side's claims")
	for _, d := range c.nodes[:3] {
		require.Empty(t, d.claimIDs(t)[minority[0].ID], "%s has a claim only imported behind the partition", d.name)
	}
	t.Logf("node 3 sees %d peers during the partition", c.nodes[3].peers(t))
	t.Logf("partitioned for %s: the majority side converged on its 70 claims, node 3 on its own 70 (20 + 50)", time.Since(cut).Round(time.Second))

	c.setLink(t, 3, true)
	took = waitConverged(t, c.nodes, idSet(before, majority, minority), 120*time.Second, "all nodes to converge after healing")
	t.Logf("healed: all 4 nodes hold the same 120 claims %s after the link came back", took.Round(time.Millisecond))
}

// TestDrillKillDuringIngest: while the CLI imports batches of 2,000
// claims into node 2, its lebowskid is SIGKILLed; three rounds, the kill
// landing at a different point of a batch each time. After every kill the
// store must open and pass bbolt's consistency check, every claim the CLI
// reported as stored must be there after a restart, and at the end the
// cluster converges again.
func TestDrillKillDuringIngest(t *testing.T) {
	c := newCluster(t, 3)
	c.start(t)
	dir := t.TempDir()
	ids := attesttest.Fresh(t, 16)
	start := time.Now()
	const rounds, batches, per = 3, 4, 2000
	all := uniqueClaims(t, ids, rounds*batches*per, "kill")
	files := make([]string, rounds*batches)
	for b := range files {
		files[b] = filepath.Join(dir, fmt.Sprintf("batch%d.jsonl", b))
		writeClaims(t, files[b], all[b*per:(b+1)*per])
	}
	t.Logf("signed %d claims in %s", len(all), time.Since(start).Round(time.Millisecond))
	victim := c.nodes[2]
	acked := map[string]bool{}
	for round := range rounds {
		delay := time.Duration(50+round*250+rand.IntN(200)) * time.Millisecond // 50–250, 300–500, 550–750 ms into a batch
		killRound(t, victim, files[round*batches:(round+1)*batches], acked, delay, round)
	}

	// And the cluster converges on whatever the victim holds.
	want := victim.claimIDs(t)
	took := waitConverged(t, c.nodes, want, 120*time.Second, "convergence after the restarts")
	t.Logf("cluster converged on %d claims %s after the last restart", len(want), took.Round(time.Millisecond))
}

// killRound imports files into victim one by one, SIGKILLs it delay after
// the second import started, checks the store file and restarts it.
func killRound(t *testing.T, victim *daemon, files []string, acked map[string]bool, delay time.Duration, round int) {
	t.Helper()
	var (
		mu      sync.Mutex
		stop    bool
		results []string
	)
	started := make(chan int, len(files))
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for b, f := range files {
			mu.Lock()
			if stop {
				mu.Unlock()
				return
			}
			mu.Unlock()
			started <- b
			t0 := time.Now()
			code, r, errOut := victim.importFile(t, f)
			mu.Lock()
			if code == 0 {
				for _, x := range r.Results {
					if x.Status == "new" || x.Status == "duplicate" {
						acked[x.ID] = true
					}
				}
				results = append(results, fmt.Sprintf("batch %d: exit 0 in %s, %v", b, time.Since(t0).Round(time.Millisecond), r.Counts))
			} else {
				results = append(results, fmt.Sprintf("batch %d: exit %d after %s (%s)", b, code, time.Since(t0).Round(time.Millisecond), firstLine(errOut)))
			}
			mu.Unlock()
		}
	}()
	for b := range started {
		if b == 1 {
			break
		}
	}
	time.Sleep(delay)
	mu.Lock()
	stop = true
	mu.Unlock()
	victim.kill9(t)
	<-loopDone
	mu.Lock()
	for _, s := range results {
		t.Logf("round %d %s", round, s)
	}
	mu.Unlock()
	require.NotEmpty(t, acked, "at least the first batch was acknowledged")

	// The file opens, passes bbolt's check and holds every acknowledged claim.
	st, err := store.Open(filepath.Join(victim.dir, "store.db"))
	require.NoError(t, err, "the store opens after kill -9")
	var checkErrs []error
	require.NoError(t, st.DB().View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			checkErrs = append(checkErrs, err)
		}
		return nil
	}))
	stats, err := st.Stats()
	require.NoError(t, err)
	var lost []string
	for id := range acked {
		if ok, err := st.Has(id); err != nil || !ok {
			lost = append(lost, id)
		}
	}
	require.NoError(t, st.Close())
	require.Empty(t, checkErrs, "bbolt consistency check")
	require.Empty(t, lost, "acknowledged claims lost by kill -9")
	t.Logf("round %d: killed %s into batch 1; %d claims acknowledged so far, %d in the store (%d committed but never acknowledged)",
		round, delay, len(acked), stats.Claims, int(stats.Claims)-len(acked))

	// Restart in its namespace: the CLI sees every acknowledged claim.
	victim.start(t)
	require.Empty(t, missing(victim.claimIDs(t), acked), "claims list after restart")
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
