package p2p

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/p2p/p2ptest"
)

// Issue 20: what many hostile identities can do to the sync and blob
// servers, and what a client at fault costs the server.

// TestSyncFairSlots: 32 identities re-open sync sessions continuously,
// each kept busy with a request every 300 ms (so neither idle nor old
// enough to be evicted); an honest peer with a positive gossipsub score
// still gets a session at once and its new claims within 5 s, again and
// again: the identities nobody vouches for hold at most
// maxInboundSyncs-reservedSyncs sessions.
func TestSyncFairSlots(t *testing.T) {
	owner := testIdentity(t)
	sv := p2ptest.NewMemStore()
	ctx := context.Background()
	// Sessions per identity are not the bound being tested (identities are
	// free): let each re-open as fast as it likes.
	victim := testNode(t, sv, Config{Limits: Limits{SyncSessionsPerMinute: 6000}})
	honest := testNode(t, p2ptest.NewMemStore(), Config{SyncAll: true})
	require.NoError(t, honest.Connect(ctx, victim.AddrInfo()))
	// Both are in the intents and keys topic meshes: after a second there
	// the honest peer's score is positive.
	attesttest.Eventually(t, 15*time.Second, "honest peer scored positive", func() bool {
		s, ok := victim.PeerScore(honest.ID())
		return ok && s > 0
	})
	attesttest.Eventually(t, 5*time.Second, "on-connect sync over", func() bool {
		_, err := honest.SyncWith(ctx, victim.ID())
		return !errors.Is(err, errSyncBusy)
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened, refused atomic.Int64
	for range maxInboundSyncs {
		h := rawHost(t)
		require.NoError(t, h.Connect(ctx, victim.AddrInfo()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			holdSyncSessions(ctx, h, victim, stop, &opened, &refused)
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	attesttest.Eventually(t, 10*time.Second, "the hostile identities hold every slot they can", func() bool {
		victim.mu.Lock()
		defer victim.mu.Unlock()
		return len(victim.inbound) >= maxInboundSyncs-reservedSyncs
	})
	time.Sleep(500 * time.Millisecond)

	for round := range 3 {
		var fresh []*attest.Claim
		for i := range 3 {
			// a package per round: the server's ID listing of a package is a
			// snapshot of up to 5 s
			fresh = append(fresh, testClaim(t, owner, fmt.Sprintf("pkg%d", round), "o3", i))
		}
		_, err := sv.Ingest(ctx, fresh...)
		require.NoError(t, err)
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := honest.SyncWith(rctx, victim.ID())
		cancel()
		took := time.Since(start)
		require.NoError(t, err, "round %d: the honest peer's catch-up", round)
		assert.Equal(t, 3, st.Added, "round %d", round)
		t.Logf("round %d: honest catch-up of %d claims in %v (%d hostile sessions opened, %d refused so far)",
			round, st.Added, took.Round(time.Millisecond), opened.Load(), refused.Load())
		time.Sleep(700 * time.Millisecond)
	}
	assert.Positive(t, refused.Load(), "the hostile identities were held to their share")
}

// holdSyncSessions keeps a sync session with victim open and busy (a
// digests request every 300 ms), re-opening it every 2 s and at once
// when it is ended or refused.
func holdSyncSessions(ctx context.Context, h host.Host, victim *Node, stop <-chan struct{}, opened, refused *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		s, err := h.NewStream(ctx, victim.ID(), SyncProtocol)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		r := bufio.NewReader(s)
		until := time.Now().Add(2 * time.Second)
		for n := 0; time.Now().Before(until); n++ {
			var resp SyncResponse
			if writeMsg(s, &SyncRequest{Op: OpDigests}, MaxSyncRequest) != nil || readMsg(r, MaxSyncResponse, &resp) != nil {
				if n == 0 {
					refused.Add(1)
				}
				time.Sleep(100 * time.Millisecond)
				break
			}
			if n == 0 {
				opened.Add(1)
			}
			select {
			case <-stop:
				_ = s.Reset()
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
		_ = s.Reset()
	}
}

func (n *Node) blobStreamsHeld() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	sum := 0
	for _, k := range n.blobsPerPeer {
		sum += k
	}
	return sum
}

// TestBlobFairSlots: 8 identities with 2 blob streams each (the per-peer
// cap), either idle before their request header or reading nothing of a
// large blob, do not keep an honest fetch from being served within 5 s.
func TestBlobFairSlots(t *testing.T) {
	setVar(t, &blobStallEvict, 300*time.Millisecond)
	for _, tc := range []struct {
		name  string
		drain bool // send a request for the large blob (and read nothing)
	}{
		{"idle streams", false},
		{"readers that do not drain", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sv := p2ptest.NewMemStore()
			small, err := sv.PutBlob([]byte("buildinfo"))
			require.NoError(t, err)
			large, err := sv.PutBlob(bytes.Repeat([]byte("deb "), 1<<20)) // 4 MiB: far beyond the stream windows
			require.NoError(t, err)
			victim := testNode(t, sv, Config{})
			ctx := context.Background()
			for range 8 {
				h := rawHost(t)
				require.NoError(t, h.Connect(ctx, victim.AddrInfo()))
				for range DefaultBlobsPerPeer {
					s, err := h.NewStream(ctx, victim.ID(), BlobProtocol)
					require.NoError(t, err)
					t.Cleanup(func() { _ = s.Reset() })
					if tc.drain {
						require.NoError(t, writeMsg(s, BlobRequest{CID: large}, maxBlobHeader))
						_ = s.CloseWrite()
					} else {
						_, err = s.Write([]byte{5}) // a header announcing 5 bytes, then silence
						require.NoError(t, err)
					}
				}
			}
			attesttest.Eventually(t, 5*time.Second, "hostile streams held", func() bool {
				return victim.blobStreamsHeld() >= maxInboundBlobs-reservedBlobs
			})
			time.Sleep(time.Second) // writes to the readers that do not drain have stalled
			t.Logf("%d hostile streams held", victim.blobStreamsHeld())

			honest := testNode(t, p2ptest.NewMemStore(), Config{})
			require.NoError(t, honest.Connect(ctx, victim.AddrInfo()))
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			start := time.Now()
			got, err := honest.FetchBlob(fctx, victim.ID(), small)
			require.NoError(t, err, "the honest fetch")
			assert.Equal(t, "buildinfo", string(got))
			t.Logf("honest fetch served in %v; refusals %v", time.Since(start).Round(time.Millisecond), victim.Refusals())
		})
	}
}

// fileBlobs serves blobs from files (a BlobOpener, as the daemon's store
// is) and counts the bytes read from them.
type fileBlobs struct {
	*p2ptest.MemStore
	dir  string
	read atomic.Int64
}

func (f *fileBlobs) put(t *testing.T, data []byte) string {
	c := vocab.CID(data)
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, c), data, 0o600))
	return c
}

func (f *fileBlobs) OpenBlob(c string) (io.ReadSeekCloser, int64, bool, error) {
	fh, err := os.Open(filepath.Join(f.dir, c))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, 0, false, err
	}
	return &countingFile{f: fh, n: &f.read}, fi.Size(), true, nil
}

type countingFile struct {
	f *os.File
	n *atomic.Int64
}

func (c *countingFile) Read(b []byte) (int, error) {
	k, err := c.f.Read(b)
	c.n.Add(int64(k))
	return k, err
}
func (c *countingFile) Seek(off int64, whence int) (int64, error) { return c.f.Seek(off, whence) }
func (c *countingFile) Close() error                              { return c.f.Close() }
func (c *countingFile) Stat() (os.FileInfo, error)                { return c.f.Stat() }

// TestBlobHashedOnce: a blob served many times, sequentially or at once,
// is read from disk to be hashed once, not once per request; a file
// changed on disk is hashed again and not served.
func TestBlobHashedOnce(t *testing.T) {
	fb := &fileBlobs{MemStore: p2ptest.NewMemStore(), dir: t.TempDir()}
	const size = 1 << 20
	one := fb.put(t, bytes.Repeat([]byte{1}, size))
	two := fb.put(t, bytes.Repeat([]byte{2}, size))
	ctx := context.Background()
	victim, err := New(ctx, Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1}, Deps{Claims: fb.MemStore, Blobs: fb})
	require.NoError(t, err)
	t.Cleanup(func() { _ = victim.Close() })
	var clients []*Node
	for range 4 {
		c := testNode(t, p2ptest.NewMemStore(), Config{})
		require.NoError(t, c.Connect(ctx, victim.AddrInfo()))
		clients = append(clients, c)
	}

	const n = 10
	for range n {
		got, err := clients[0].FetchBlob(ctx, victim.ID(), one)
		require.NoError(t, err)
		require.Len(t, got, size)
	}
	read := fb.read.Load()
	t.Logf("%d requests of a %d-byte blob: %d bytes read from disk", n, size, read)
	assert.LessOrEqual(t, read, int64((n+1)*size), "sent n times, hashed once")

	// Four requests at once of a blob not checked yet: hashed once.
	fb.read.Store(0)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.FetchBlob(ctx, victim.ID(), two)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	read = fb.read.Load()
	t.Logf("4 requests at once: %d bytes read", read)
	assert.LessOrEqual(t, read, int64(5*size), "sent 4 times, hashed once")

	// The file changes on disk (a new modification time): hashed again,
	// found wrong, not served.
	path := filepath.Join(fb.dir, one)
	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte{3}, size), 0o600))
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(path, later, later))
	_, err = clients[1].FetchBlob(ctx, victim.ID(), one)
	require.Error(t, err, "a damaged copy is not served")
	assert.NotErrorIs(t, err, ErrBlobMismatch, "the server refused it before sending a byte")
}

// levelLog records log lines by level.
type levelLog struct {
	mu    sync.Mutex
	lines []string
	count map[slog.Level]int
}

func (l *levelLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *levelLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count == nil {
		l.count = map[slog.Level]int{}
	}
	l.count[r.Level]++
	l.lines = append(l.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (l *levelLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levelLog) WithGroup(string) slog.Handler      { return l }

func (l *levelLog) at(level slog.Level) (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lines []string
	for _, s := range l.lines {
		if strings.HasPrefix(s, level.String()+" ") {
			lines = append(lines, s)
		}
	}
	return l.count[level], lines
}

// strictIDs is a claim store that, like the bbolt store, cannot even look
// up an ID that is not a CID.
type strictIDs struct{ *p2ptest.MemStore }

func (s strictIDs) GetRaw(id string) ([]byte, bool, error) {
	if _, err := vocab.ParseCID(id); err != nil {
		return nil, false, err
	}
	return s.MemStore.GetRaw(id)
}

// TestSyncBadRequests: sync requests with malformed claim IDs are the
// client's fault: the session ends with the reason (not "internal
// error"), the peer is penalized (twice: refused until the penalties
// decay), and the log gets no ERROR line, at most one Warn per kind.
func TestSyncBadRequests(t *testing.T) {
	logs := &levelLog{}
	ms := p2ptest.NewMemStore()
	victim, err := New(context.Background(), Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1},
		Deps{Claims: strictIDs{ms}, Blobs: ms}, WithLogger(slog.New(logs)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = victim.Close() })
	ctx := context.Background()
	h := rawHost(t)
	require.NoError(t, h.Connect(ctx, victim.AddrInfo()))

	session := func(reqs ...*SyncRequest) (answers []SyncResponse, err error) {
		s, err := h.NewStream(ctx, victim.ID(), SyncProtocol)
		require.NoError(t, err)
		defer s.Reset()
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(s)
		for _, req := range reqs {
			if err := writeMsg(s, req, MaxSyncRequest); err != nil {
				return answers, err
			}
			var resp SyncResponse
			if err := readMsg(r, MaxSyncResponse, &resp); err != nil {
				return answers, err
			}
			answers = append(answers, resp)
		}
		return answers, nil
	}
	notCID := "bxxxxxxxxxxxxxxxxxxx" // a claim ID by its alphabet, not a CID
	answers, err := session(&SyncRequest{Op: OpGet, IDs: []string{notCID}}, &SyncRequest{Op: OpDigests})
	require.Error(t, err, "the session ends after the bad request")
	require.Len(t, answers, 1)
	assert.Contains(t, answers[0].Error, "bad request", "the client's fault, said so")
	assert.Positive(t, victim.penaltyOf(t, h), "the peer is penalized")

	answers, err = session(&SyncRequest{Op: OpIDs, Package: "hello", After: notCID}, &SyncRequest{Op: OpDigests})
	require.Error(t, err)
	require.Len(t, answers, 1)
	assert.Contains(t, answers[0].Error, "bad request")

	// Two penalties: graylisted, and refused sessions until they decay.
	require.Equal(t, float64(graylistThreshold), PeerScoreThresholds().GraylistThreshold)
	answers, err = session(&SyncRequest{Op: OpDigests})
	assert.Error(t, err, "a penalized peer is refused")
	assert.Empty(t, answers)

	errs, lines := logs.at(slog.LevelError)
	assert.Zero(t, errs, "no ERROR line: %v", lines)
	warns, lines := logs.at(slog.LevelWarn)
	assert.LessOrEqual(t, warns, 2, "one Warn for the fault, one for the penalty, once a minute: %v", lines)
}

// TestValuedPeers: a peer that delivers a new claim of a builder the node
// trusts is valued (may use the reserved slots); new claims of other
// builders, or claims already held, do not make it so.
func TestValuedPeers(t *testing.T) {
	ids := attesttest.Fresh(t, 2)
	trusted, other := ids[0], ids[1]
	st := p2ptest.NewMemStore()
	n, err := New(context.Background(), Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SyncInterval: -1},
		Deps{Claims: st, Keys: attest.NewKeyring(pubOf(t, trusted))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	valued := func(h host.Host) bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.valuedLocked(h.ID(), time.Now())
	}
	a, b := rawHost(t), rawHost(t)
	n.emit([]*attest.Claim{testClaim(t, other, "hello", "o3", 1)}, []bool{true}, a.ID())
	n.emit([]*attest.Claim{testClaim(t, trusted, "hello", "o3", 2)}, []bool{false}, a.ID())
	assert.False(t, valued(a), "an unvetted builder's claim, or one already held")
	n.emit([]*attest.Claim{testClaim(t, other, "hello", "o3", 3), testClaim(t, trusted, "hello", "o3", 4)}, []bool{true, true}, b.ID())
	assert.True(t, valued(b), "a new claim of a trusted builder")
}
