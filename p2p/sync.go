package p2p

import (
	"bufio"
	"bytes"
	"context"
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
	// maxMissingPerSync bounds the claim IDs one catch-up session lists
	// and fetches; the rest follows in the next session (the digests
	// still differ).
	maxMissingPerSync = 250000
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

// inboundSync is one inbound catch-up session.
type inboundSync struct {
	start  time.Time
	s      network.Stream
	valued bool // the peer was valued when the session began (reserved slots)
	// progress is when the session last moved (Unix ns): a request read,
	// response bytes written. Sessions without progress are evicted first.
	progress atomic.Int64
}

func (in *inboundSync) idle(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, in.progress.Load()))
}

// progressWriter marks progress on every successful write.
type progressWriter struct {
	w  io.Writer
	at *atomic.Int64
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if n > 0 {
		p.at.Store(time.Now().UnixNano())
	}
	return n, err
}

// idListings caches the sorted claim IDs of the few packages listed last,
// shared by every inbound session: a client pages through a package with
// many "ids" requests within seconds, listing a large package is the
// expensive part, and
// one shared snapshot per package bounds the memory (a per-session copy of
// a million IDs, times 32 sessions, would not be). A snapshot serves for
// idListingTTL; a page may then miss claims stored since, which the next
// catch-up finds (the digests still differ).
type idListings struct {
	mu      sync.Mutex
	entries map[string]idListing
}

type idListing struct {
	ids []string
	at  time.Time
}

const (
	idListingTTL     = 5 * time.Second
	idListingEntries = 4
)

func (c *idListings) get(pkg string, list func(string) ([]string, error)) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[pkg]; ok && time.Since(e.at) < idListingTTL {
		return e.ids, nil
	}
	ids, err := list(pkg) // under the lock: concurrent listings of a large package would multiply memory
	if err != nil {
		return nil, err
	}
	if c.entries == nil {
		c.entries = make(map[string]idListing)
	}
	if len(c.entries) >= idListingEntries {
		var oldest string
		for k, e := range c.entries {
			if oldest == "" || e.at.Before(c.entries[oldest].at) {
				oldest = k
			}
		}
		delete(c.entries, oldest)
	}
	c.entries[pkg] = idListing{ids: ids, at: time.Now()}
	return ids, nil
}

// admitSync takes an inbound sync slot for p, or says why not.
//
// Fair slots: of maxInboundSyncs sessions, peers that are not valued
// (valuedLocked: positive gossipsub score, or new claims of builders the
// node trusts delivered lately) hold at most maxInboundSyncs -
// reservedSyncs, so identities nobody vouches for, however many, cannot
// take every slot. When there is no room, a session is ended for the
// newcomer (syncVictimLocked): one that made no progress for
// syncIdleEvict or has run syncEvictAfter, the longest idle first; a
// valued newcomer short of its reserved slots ends the least active
// session of a peer that is not valued, whatever its age. A newcomer that
// is not valued never ends a valued peer's session within the reserve.
func (n *Node) admitSync(p peer.ID, s network.Stream) (*inboundSync, string) {
	if n.penalized(p) {
		return nil, RefusePenalized
	}
	if !n.syncRate.allow(p) {
		return nil, RefuseSyncRate
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.inbound[p] != nil {
		return nil, RefuseSyncBusy
	}
	valued := n.valuedLocked(p, now)
	victim, ok := n.syncVictimLocked(valued, now)
	if !ok {
		return nil, RefuseSyncBusy
	}
	if victim != "" {
		go n.inbound[victim].s.Reset() // not under n.mu: a reset can wait on a peer that does not read
		delete(n.inbound, victim)
		n.refused.add(RefuseSyncEvicted, 1)
	}
	in := &inboundSync{start: now, s: s, valued: valued}
	in.progress.Store(now.UnixNano())
	n.inbound[p] = in
	return in, ""
}

// syncVictimLocked says whether a newcomer (valued or not) may have a
// session, and which session must end for it ("" when there is room).
// n.mu held.
func (n *Node) syncVictimLocked(valued bool, now time.Time) (peer.ID, bool) {
	nValued := 0
	for _, in := range n.inbound {
		if in.valued {
			nValued++
		}
	}
	share := maxInboundSyncs - reservedSyncs // most sessions of peers that are not valued
	nOther := len(n.inbound) - nValued
	if len(n.inbound) < maxInboundSyncs && (valued || nOther < share) {
		return "", true
	}
	// A valued newcomer is owed a slot while valued sessions hold fewer
	// than the reserve: a session of a peer that is not valued ends,
	// whatever its age.
	owed := valued && nValued < reservedSyncs
	var victim peer.ID
	var vIn *inboundSync
	for q, in := range n.inbound {
		switch {
		case owed:
			if in.valued {
				continue
			}
		case in.idle(now) < syncIdleEvict && now.Sub(in.start) < syncEvictAfter:
			continue // young and busy
		case !valued && in.valued && nOther >= share:
			continue // ending it would not make room in the newcomer's share
		}
		// Sessions of peers that are not valued first, then the longest idle.
		if vIn == nil || (vIn.valued && !in.valued) || (vIn.valued == in.valued && in.idle(now) > vIn.idle(now)) {
			victim, vIn = q, in
		}
	}
	return victim, vIn != nil
}

func (n *Node) handleSync(s network.Stream) {
	p := s.Conn().RemotePeer()
	sess, why := n.admitSync(p, s)
	if sess == nil {
		n.refused.add(why, 1)
		_ = s.Reset()
		return
	}
	defer func() {
		n.mu.Lock()
		if n.inbound[p] == sess {
			delete(n.inbound, p)
		}
		n.mu.Unlock()
	}()
	lim := n.cfg.Limits
	end := sess.start.Add(lim.SyncSessionTimeout)
	r := bufio.NewReader(s)
	w := bufio.NewWriterSize(progressWriter{w: s, at: &sess.progress}, 64<<10)
	for i := 0; ; i++ {
		if i >= lim.SyncRequestsPerSession || time.Now().After(end) {
			n.refused.add(RefuseSyncBudget, 1)
			n.log.Debug("sync: session budget spent", "peer", p, "requests", i, "took", time.Since(sess.start))
			_ = s.Reset()
			return
		}
		_ = s.SetReadDeadline(minTime(time.Now().Add(syncIdleTimeout), end))
		var req SyncRequest
		err := readMsg(r, MaxSyncRequest, &req)
		if err == nil {
			err = req.Validate()
		}
		if err != nil {
			switch {
			case i > 0 && errors.Is(err, io.EOF):
				_ = s.Close()
			case peerFault(err):
				// The client's fault (a malformed frame or request, IDs
				// that are not claim IDs): one penalty, the session ends
				// with the reason, logged at most once a minute per peer.
				n.syncFault(p, err)
				_ = s.SetWriteDeadline(time.Now().Add(syncIOTimeout))
				if writeMsg(w, &SyncResponse{Error: truncate("bad request: "+err.Error(), 512)}, MaxSyncResponse) == nil {
					_ = w.Flush()
				}
				_ = s.Close()
			default:
				n.log.Debug("sync: request not read", "peer", p, "err", err)
				_ = s.Reset()
			}
			return
		}
		resp, frames := n.serveSync(&req)
		sess.progress.Store(time.Now().UnixNano()) // after the server's own work: only the client's idling counts
		_ = s.SetWriteDeadline(minTime(time.Now().Add(syncIOTimeout), end))
		err = writeMsg(w, resp, MaxSyncResponse)
		for _, f := range frames {
			if err != nil {
				break
			}
			err = writeFrame(w, f)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			n.log.Debug("sync: write response", "peer", p, "err", err)
			_ = s.Reset()
			return
		}
		if resp.Error != "" {
			_ = s.Close()
			return
		}
	}
}

// syncFault counts and penalizes a client's protocol fault.
func (n *Node) syncFault(p peer.ID, err error) {
	n.refused.add(RefuseSyncFault, 1)
	n.peerFaultLog(p, "sync: request breaks the protocol", "err", err)
	n.Penalize(p, "sync request broke the protocol")
}

func truncate(s string, max int) string {
	if len(s) > max {
		return s[:max]
	}
	return s
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// serveSync answers one valid request (SyncRequest.Validate); for "get"
// it also returns the claim frames that follow the header. A failure
// here is the node's own (the store), logged at Error at most every 10 s.
func (n *Node) serveSync(req *SyncRequest) (*SyncResponse, [][]byte) {
	internal := &SyncResponse{Error: "internal error"}
	st := n.deps.Claims
	switch req.Op {
	case OpDigests:
		sd, err := st.Digests()
		if err != nil {
			n.errorLog("sync digests", "sync: digests", "err", err)
			return internal, nil
		}
		d := make(map[string]Digest, len(sd))
		for pkg, v := range sd {
			d[pkg] = wireDigest(v)
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
		return &SyncResponse{Digests: d}, nil
	case OpIDs:
		ids, err := n.idLists.get(req.Package, st.ClaimIDs)
		if err != nil {
			n.errorLog("sync ids", "sync: claim ids", "package", req.Package, "err", err)
			return internal, nil
		}
		start := 0
		if req.After != "" {
			start = sort.SearchStrings(ids, req.After)
			if start < len(ids) && ids[start] == req.After {
				start++
			}
		}
		end := min(start+MaxIDsPerPage, len(ids))
		return &SyncResponse{IDs: ids[start:end], More: end < len(ids)}, nil
	case OpGet:
		resp := &SyncResponse{}
		var frames [][]byte
		budget := claimBudget
		seenKey := make(map[string]bool)
		for _, id := range req.IDs {
			raw, ok, err := st.GetRaw(id)
			if err != nil {
				n.errorLog("sync get", "sync: get claim", "claim", id, "err", err)
				return internal, nil
			}
			if !ok {
				resp.Unknown = append(resp.Unknown, id)
				continue
			}
			var key []byte
			fpr := wireBuilder(raw)
			if fpr != "" && !seenKey[fpr] {
				key = n.signerKey(fpr)
			}
			if len(raw)+len(key) > budget && len(frames) > 0 {
				break
			}
			budget -= len(raw) + len(key)
			frames = append(frames, raw)
			if key != nil && len(resp.Keys) < MaxKeysPerResponse {
				seenKey[fpr] = true
				resp.Keys = append(resp.Keys, key)
			}
		}
		resp.Count = len(frames)
		return resp, frames
	}
	return &SyncResponse{Error: "unknown op"}, nil
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
	resp, _, err := c.roundTripFrames(req)
	return resp, err
}

// roundTripFrames sends req and reads the response and, for "get", the
// claim frames that follow it.
func (c *syncConn) roundTripFrames(req *SyncRequest) (*SyncResponse, [][]byte, error) {
	_ = c.s.SetWriteDeadline(time.Now().Add(syncIOTimeout))
	if err := writeMsg(c.s, req, MaxSyncRequest); err != nil {
		return nil, nil, err
	}
	_ = c.s.SetReadDeadline(time.Now().Add(syncIOTimeout))
	var resp SyncResponse
	if err := readMsg(c.r, MaxSyncResponse, &resp); err != nil {
		return nil, nil, fmt.Errorf("sync %s: %w", req.Op, err)
	}
	if err := resp.Validate(req); err != nil {
		return nil, nil, fmt.Errorf("sync %s: %w", req.Op, err)
	}
	if resp.Error != "" {
		return nil, nil, fmt.Errorf("sync %s: peer error: %q", req.Op, resp.Error)
	}
	var frames [][]byte
	if resp.Count > 0 {
		frames = make([][]byte, resp.Count)
		total := 0
		for i := range frames {
			f, err := readFrame(c.r, attest.MaxEnvelopeSize)
			if err != nil {
				return nil, nil, fmt.Errorf("sync get: claim %d: %w", i, err)
			}
			if total += len(f); total > MaxSyncResponse {
				return nil, nil, fmt.Errorf("sync get: %w: %w: claims exceed %d bytes", ErrProtocol, ErrTooLarge, MaxSyncResponse)
			}
			frames[i] = f
		}
	}
	return &resp, frames, nil
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
		if peerFault(err) {
			n.refused.add(RefuseSyncInvalid, 1)
			n.Penalize(p, "sync answer broke the protocol")
		}
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return stats, fmt.Errorf("sync with %s: %w", p, err)
	}
	_ = s.Close()
	return stats, nil
}

// interest reports whether packages should be synced: nil means all.
func (n *Node) interest(local map[string]attest.SetDigest) map[string]bool {
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
		if (want == nil || want[pkg]) && d.Count > 0 && wireDigest(local[pkg]) != d {
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
		// The peer announced how many claims it holds for pkg: paging
		// stops there, so a peer answering "more" forever cannot grow
		// this node's memory. Not a protocol violation: an honest peer's
		// store grows during a session; the rest comes next session.
		announced := remote.Digests[pkg].Count
		listed := 0
		after := ""
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			resp, err := c.roundTrip(&SyncRequest{Op: OpIDs, Package: pkg, After: after})
			if err != nil {
				return err
			}
			listed += len(resp.IDs)
			for _, id := range resp.IDs {
				if _, ok := haveSet[id]; !ok {
					missing = append(missing, id)
				}
			}
			if !resp.More || listed >= announced || len(missing) >= maxMissingPerSync {
				break
			}
			after = resp.IDs[len(resp.IDs)-1]
		}
		if len(missing) >= maxMissingPerSync {
			missing = missing[:maxMissingPerSync]
			break // the rest in the next session
		}
	}
	stats.Missing = len(missing)
	if len(missing) == 0 {
		return nil
	}
	return n.fetchClaims(ctx, c, missing, stats)
}

// keyOverlay looks keys up in the node's keyring first, then in the keys
// the sync peer sent this session (indexed by their own fingerprint, so a
// key can only ever vouch for claims of that fingerprint).
type keyOverlay struct {
	base  attest.KeyLookup
	mu    sync.RWMutex
	extra map[string]*openpgp.Entity
}

func (k *keyOverlay) Lookup(fpr string) *openpgp.Entity {
	if e := k.base.Lookup(fpr); e != nil {
		return e
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.extra[fpr]
}

func (k *keyOverlay) add(e *openpgp.Entity) {
	k.mu.Lock()
	k.extra[attest.Fingerprint(e)] = e
	k.mu.Unlock()
}

type rawClaim struct {
	raw  []byte
	want map[string]bool // IDs the batch asked for
}

// fetchClaims runs a pipeline: one goroutine does the network round trips,
// a pool of workers verifies claims (the peer may lie), and this goroutine
// stores verified claims in batches.
func (n *Node) fetchClaims(ctx context.Context, c *syncConn, missing []string, stats *SyncStats) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	from := c.s.Conn().RemotePeer()
	keys := &keyOverlay{base: n.keys, extra: make(map[string]*openpgp.Entity)}
	raws := make(chan rawClaim, 4*n.opt.syncBatch)
	verified := make(chan *attest.Claim, 2*n.opt.syncBatch)
	var invalid, received atomic.Int64
	var fetchErr error
	fail := func() { cancel(); _ = c.s.Reset() }

	go func() { // fetcher
		defer close(raws)
		queue := missing
		for len(queue) > 0 && ctx.Err() == nil {
			batch := queue[:min(n.opt.syncBatch, len(queue))]
			resp, frames, err := c.roundTripFrames(&SyncRequest{Op: OpGet, IDs: batch})
			if err != nil {
				fetchErr = err
				fail()
				return
			}
			for _, kb := range resp.Keys {
				e, err := attest.ParsePublicKey(kb)
				if err != nil {
					invalid.Add(1)
					continue
				}
				keys.add(e)
			}
			covered := resp.Count + len(resp.Unknown)
			want := make(map[string]bool, covered)
			for _, id := range batch[:covered] {
				want[id] = true
			}
			queue = queue[covered:]
			received.Add(int64(len(frames)))
			for _, f := range frames {
				select {
				case raws <- rawClaim{raw: f, want: want}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()

	var wg sync.WaitGroup
	for w := 0; w < n.opt.verifyWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rc := range raws {
				if ctx.Err() != nil {
					continue // drain
				}
				cl, err := attest.Verify(rc.raw, keys, n.opt.verify)
				if err != nil || !rc.want[cl.ID] {
					if invalid.Add(1) > maxInvalidPerSync {
						fail()
					}
					continue
				}
				select {
				case verified <- cl:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() { wg.Wait(); close(verified) }()

	var storeErr error
	batch := make([]*attest.Claim, 0, n.opt.syncBatch)
	flush := func() {
		if len(batch) == 0 || storeErr != nil {
			batch = batch[:0]
			return
		}
		added, err := n.inlet.IngestClaims(ctx, ViaSync, from.String(), batch...)
		if err != nil {
			storeErr = fmt.Errorf("store synced claims: %w", err)
			fail()
			return
		}
		for _, a := range added {
			if a {
				stats.Added++
			}
		}
		n.emit(batch, added, from)
		batch = make([]*attest.Claim, 0, n.opt.syncBatch)
	}
	for {
		var cl *attest.Claim
		var ok bool
		select {
		case cl, ok = <-verified:
		default:
			flush() // nothing waiting: store what we have
			cl, ok = <-verified
		}
		if !ok {
			break
		}
		if batch = append(batch, cl); len(batch) >= n.opt.syncBatch {
			flush()
		}
	}
	flush()
	stats.Received = int(received.Load())
	stats.Invalid = int(invalid.Load())
	switch {
	case storeErr != nil:
		return storeErr
	case stats.Invalid > maxInvalidPerSync:
		return fmt.Errorf("%w: peer sent %d invalid claims or keys", ErrProtocol, stats.Invalid)
	case fetchErr != nil:
		return fetchErr
	}
	return ctx.Err()
}
