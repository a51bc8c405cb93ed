package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lebowski-dist/lebowski/attest"
)

// SyncProtocol is the catch-up protocol.
const SyncProtocol protocol.ID = "/lebowski/sync/1"

const (
	syncIOTimeout     = 30 * time.Second
	maxInboundSyncs   = 32
	maxInvalidPerSync = 16
)

var errSyncBusy = errors.New("sync with this peer already running")

// SyncStats describes one catch-up session.
type SyncStats struct {
	Peer       peer.ID
	Packages   int // packages whose digests differed
	Missing    int // claim IDs the peer had and we did not
	Received   int // claims received
	Added      int // claims newly stored
	Invalid    int // claims that failed verification
	Duration   time.Duration
	FinishedAt time.Time
}

// ---- server ----

func (n *Node) handleSync(s network.Stream) {
	p := s.Conn().RemotePeer()
	n.mu.Lock()
	if n.closed || n.inbound[p] || len(n.inbound) >= maxInboundSyncs {
		n.mu.Unlock()
		_ = s.Reset()
		return
	}
	n.inbound[p] = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.inbound, p)
		n.mu.Unlock()
	}()
	r := bufio.NewReader(s)
	for i := 0; i < maxRequestsPerStream; i++ {
		_ = s.SetReadDeadline(time.Now().Add(syncIOTimeout))
		var req SyncRequest
		if err := readMsg(r, MaxSyncRequest, &req); err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				_ = s.Close()
			} else {
				n.log.Debug("sync: bad request", "peer", p, "err", err)
				_ = s.Reset()
			}
			return
		}
		resp := n.serveSync(&req)
		_ = s.SetWriteDeadline(time.Now().Add(syncIOTimeout))
		if err := writeMsg(s, resp, MaxSyncResponse); err != nil {
			n.log.Debug("sync: write response", "peer", p, "err", err)
			_ = s.Reset()
			return
		}
		if resp.Error != "" {
			_ = s.Close()
			return
		}
	}
	_ = s.Close()
}

func (n *Node) serveSync(req *SyncRequest) *SyncResponse {
	if err := req.Validate(); err != nil {
		return &SyncResponse{Error: err.Error()}
	}
	st := n.deps.Claims
	switch req.Op {
	case OpDigests:
		d, err := st.Digests()
		if err != nil {
			n.log.Error("sync: digests", "err", err)
			return &SyncResponse{Error: "internal error"}
		}
		if len(d) > MaxDigests {
			// Serve the first MaxDigests packages; a client sees the rest
			// from peers with fewer packages or after we grow the limit.
			keys := make([]string, 0, len(d))
			for k := range d {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys[MaxDigests:] {
				delete(d, k)
			}
		}
		if d == nil {
			d = map[string]Digest{}
		}
		return &SyncResponse{Digests: d}
	case OpIDs:
		ids, err := st.ClaimIDs(req.Package)
		if err != nil {
			n.log.Error("sync: claim ids", "package", req.Package, "err", err)
			return &SyncResponse{Error: "internal error"}
		}
		start := sort.SearchStrings(ids, req.After)
		if start < len(ids) && ids[start] == req.After {
			start++
		}
		if req.After == "" {
			start = 0
		}
		end := min(start+MaxIDsPerPage, len(ids))
		return &SyncResponse{IDs: ids[start:end], More: end < len(ids)}
	case OpGet:
		resp := &SyncResponse{}
		budget := claimBudget
		seenKey := make(map[string]bool)
		for _, id := range req.IDs {
			raw, ok, err := st.GetRaw(id)
			if err != nil {
				n.log.Error("sync: get claim", "claim", id, "err", err)
				return &SyncResponse{Error: "internal error"}
			}
			if !ok {
				resp.Unknown = append(resp.Unknown, id)
				continue
			}
			var key []byte
			fpr, err := builderOf(raw)
			if err == nil && !seenKey[fpr] {
				key = n.signerKey(fpr)
			}
			if len(raw)+len(key) > budget && len(resp.Claims) > 0 {
				break
			}
			budget -= len(raw) + len(key)
			resp.Claims = append(resp.Claims, json.RawMessage(raw))
			if key != nil && len(resp.Keys) < MaxKeysPerResponse {
				seenKey[fpr] = true
				resp.Keys = append(resp.Keys, key)
			}
		}
		if len(resp.Claims)+len(resp.Unknown) == 0 {
			return &SyncResponse{Error: "internal error: no progress"}
		}
		return resp
	}
	return &SyncResponse{Error: "unknown op"}
}

// builderOf extracts the signer fingerprint of a stored canonical envelope.
func builderOf(raw []byte) (string, error) {
	var env struct {
		Payload []byte `json:"payload"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return "", err
	}
	var st struct {
		Builder string `json:"builder"`
	}
	if err := json.Unmarshal(env.Payload, &st); err != nil {
		return "", err
	}
	return st.Builder, nil
}

// signerKey returns the serialized public key of a builder (cached).
func (n *Node) signerKey(fpr string) []byte {
	n.mu.Lock()
	k, ok := n.keyCache[fpr]
	n.mu.Unlock()
	if ok {
		return k
	}
	e := n.keys.Lookup(fpr)
	if e == nil {
		return nil
	}
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		return nil
	}
	k = b.Bytes()
	n.mu.Lock()
	if len(n.keyCache) > 10000 {
		clear(n.keyCache)
	}
	n.keyCache[fpr] = k
	n.mu.Unlock()
	return k
}

// ---- client ----

// syncConn is the client end of a sync stream.
type syncConn struct {
	s network.Stream
	r *bufio.Reader
}

func (c *syncConn) roundTrip(req *SyncRequest) (*SyncResponse, error) {
	_ = c.s.SetWriteDeadline(time.Now().Add(syncIOTimeout))
	if err := writeMsg(c.s, req, MaxSyncRequest); err != nil {
		return nil, err
	}
	_ = c.s.SetReadDeadline(time.Now().Add(syncIOTimeout))
	var resp SyncResponse
	if err := readMsg(c.r, MaxSyncResponse, &resp); err != nil {
		return nil, fmt.Errorf("sync %s: %w", req.Op, err)
	}
	if err := resp.Validate(req); err != nil {
		return nil, fmt.Errorf("sync %s: %w", req.Op, err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("sync %s: peer error: %s", req.Op, resp.Error)
	}
	return &resp, nil
}

// SyncWith catches up with one peer: it compares per-package digests,
// lists the claim IDs of packages that differ, fetches the claims it lacks
// in batches, verifies each (the peer may lie) and stores them. At most one
// sync per peer runs at a time.
func (n *Node) SyncWith(ctx context.Context, p peer.ID) (stats SyncStats, err error) {
	stats.Peer = p
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return stats, ErrClosed
	}
	if n.syncing[p] {
		n.mu.Unlock()
		return stats, errSyncBusy
	}
	n.syncing[p] = true
	n.mu.Unlock()
	start := time.Now()
	defer func() {
		stats.Duration = time.Since(start)
		stats.FinishedAt = time.Now()
		n.mu.Lock()
		delete(n.syncing, p)
		n.syncStats[p] = stats
		n.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, n.opt.syncTimeout)
	defer cancel()
	s, err := n.host.NewStream(ctx, p, SyncProtocol)
	if err != nil {
		return stats, fmt.Errorf("sync with %s: open stream: %w", p, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	err = n.runSync(ctx, &syncConn{s: s, r: bufio.NewReader(s)}, &stats)
	if err != nil {
		_ = s.Reset()
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return stats, fmt.Errorf("sync with %s: %w", p, err)
	}
	_ = s.Close()
	return stats, nil
}

// interest reports whether packages should be synced: nil means all.
func (n *Node) interest(local map[string]Digest) map[string]bool {
	if n.cfg.SyncAll {
		return nil
	}
	want := make(map[string]bool, len(local))
	for pkg := range local {
		want[pkg] = true
	}
	n.mu.Lock()
	for name, ts := range n.topics {
		if ts.subscribed {
			if pkg, _, err := ParseTopic(name); err == nil {
				want[pkg] = true
			}
		}
	}
	n.mu.Unlock()
	return want
}

func (n *Node) runSync(ctx context.Context, c *syncConn, stats *SyncStats) error {
	remote, err := c.roundTrip(&SyncRequest{Op: OpDigests})
	if err != nil {
		return err
	}
	local, err := n.deps.Claims.Digests()
	if err != nil {
		return fmt.Errorf("local digests: %w", err)
	}
	want := n.interest(local)
	pkgs := make([]string, 0, len(remote.Digests))
	for pkg, d := range remote.Digests {
		if (want == nil || want[pkg]) && d.Count > 0 && local[pkg] != d {
			pkgs = append(pkgs, pkg)
		}
	}
	sort.Strings(pkgs)
	stats.Packages = len(pkgs)
	var missing []string
	for _, pkg := range pkgs {
		have, err := n.deps.Claims.ClaimIDs(pkg)
		if err != nil {
			return fmt.Errorf("local claim ids of %s: %w", pkg, err)
		}
		haveSet := make(map[string]struct{}, len(have))
		for _, id := range have {
			haveSet[id] = struct{}{}
		}
		after := ""
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			resp, err := c.roundTrip(&SyncRequest{Op: OpIDs, Package: pkg, After: after})
			if err != nil {
				return err
			}
			for _, id := range resp.IDs {
				if _, ok := haveSet[id]; !ok {
					missing = append(missing, id)
				}
			}
			if !resp.More {
				break
			}
			after = resp.IDs[len(resp.IDs)-1]
		}
	}
	stats.Missing = len(missing)
	if len(missing) == 0 {
		return nil
	}
	return n.fetchClaims(ctx, c, missing, stats)
}

type fetched struct {
	want map[string]bool
	resp *SyncResponse
}

// fetchClaims pipelines network round trips (one goroutine) with parallel
// verification and batched ingest (this goroutine).
func (n *Node) fetchClaims(ctx context.Context, c *syncConn, missing []string, stats *SyncStats) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan fetched, 2)
	var fetchErr error
	go func() {
		defer close(ch)
		queue := missing
		for len(queue) > 0 {
			batch := queue[:min(n.opt.syncBatch, len(queue))]
			resp, err := c.roundTrip(&SyncRequest{Op: OpGet, IDs: batch})
			if err != nil {
				fetchErr = err
				return
			}
			covered := len(resp.Claims) + len(resp.Unknown)
			want := make(map[string]bool, covered)
			for _, id := range batch[:covered] {
				want[id] = true
			}
			queue = queue[covered:]
			select {
			case ch <- fetched{want: want, resp: resp}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var procErr error
	for f := range ch {
		if procErr != nil {
			continue // drain
		}
		if err := n.processBatch(ctx, c.s.Conn().RemotePeer(), f, stats); err != nil {
			procErr = err
			cancel()
			_ = c.s.Reset() // unblock the fetcher
		}
	}
	if procErr != nil {
		return procErr
	}
	return fetchErr
}

// keyOverlay looks keys up in the node's keyring first, then in the keys a
// sync peer sent (each checked to match its fingerprint on parse).
type keyOverlay struct {
	base  attest.KeyLookup
	extra map[string]*openpgp.Entity
}

func (k keyOverlay) Lookup(fpr string) *openpgp.Entity {
	if e := k.base.Lookup(fpr); e != nil {
		return e
	}
	return k.extra[fpr]
}

func (n *Node) processBatch(ctx context.Context, from peer.ID, f fetched, stats *SyncStats) error {
	keys := keyOverlay{base: n.keys, extra: make(map[string]*openpgp.Entity, len(f.resp.Keys))}
	for _, kb := range f.resp.Keys {
		e, err := attest.ParsePublicKey(kb)
		if err != nil {
			stats.Invalid++
			continue
		}
		keys.extra[attest.Fingerprint(e)] = e
	}
	claims := make([]*attest.Claim, len(f.resp.Claims))
	var next, invalid atomic.Int64
	var wg sync.WaitGroup
	workers := min(n.opt.verifyWorkers, len(claims))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(claims) || ctx.Err() != nil {
					return
				}
				cl, err := attest.Verify(f.resp.Claims[i], keys, n.opt.verify)
				if err != nil || !f.want[cl.ID] {
					invalid.Add(1)
					continue
				}
				claims[i] = cl
			}
		}()
	}
	wg.Wait()
	stats.Received += len(claims)
	stats.Invalid += int(invalid.Load())
	if stats.Invalid > maxInvalidPerSync {
		return fmt.Errorf("%w: peer sent %d invalid claims or keys", ErrProtocol, stats.Invalid)
	}
	ok := claims[:0]
	for _, cl := range claims {
		if cl != nil {
			ok = append(ok, cl)
		}
	}
	if len(ok) == 0 {
		return ctx.Err()
	}
	added, err := n.deps.Claims.Ingest(ctx, ok...)
	if err != nil {
		return fmt.Errorf("store synced claims: %w", err)
	}
	for _, a := range added {
		if a {
			stats.Added++
		}
	}
	n.emit(ok, added, from)
	return nil
}
