package p2p

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// BlobProtocol serves content-addressed blobs.
const BlobProtocol protocol.ID = "/lebowski/blob/1"

const (
	maxBlobHeader   = 4 << 10
	maxInboundBlobs = 16
	blobIOTimeout   = 60 * time.Second
)

// BlobRequest asks for one blob.
type BlobRequest struct {
	CID string `json:"cid"`
}

// BlobResponse precedes the blob bytes: Size bytes follow unless Error is set.
type BlobResponse struct {
	Error string `json:"error,omitempty"`
	Size  int64  `json:"size,omitempty"`
}

// parseBlobCID checks a requested CID (vocab.ParseCID: CIDv1, raw,
// sha2-256, canonical form), the only kind the blob protocol serves.
func parseBlobCID(s string) (string, error) {
	if _, err := vocab.ParseCID(s); err != nil {
		return "", fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return s, nil
}

// checkBlob verifies that data hashes to c.
func checkBlob(c string, data []byte) error {
	if got := vocab.CID(data); got != c {
		return fmt.Errorf("%w: want %s, got %s", ErrBlobMismatch, c, got)
	}
	return nil
}

// inboundBlob is one inbound blob stream: waiting for its request header
// (pending), then served (holding one of maxInboundBlobs slots).
type inboundBlob struct {
	p       peer.ID
	s       network.Stream
	since   time.Time // opened
	valued  bool      // the peer was valued when the stream was served
	serving bool
	// progress is when the stream last moved (Unix ns): served, or bytes
	// written to the reader.
	progress atomic.Int64
}

func (b *inboundBlob) stalled(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, b.progress.Load()))
}

// admitBlob registers a new blob stream of p as pending, or names the
// refusal: a penalized peer, over its request rate, at its stream cap
// (Limits.BlobsPerPeer, pending and served together). Streams waiting for
// their header hold no serving slot; when maxPendingBlobs wait, the one
// waiting longest is reset for the newcomer (an honest client sends its
// header as soon as the stream is open), so idle streams, from however
// many identities, cannot keep a request from being read.
func (n *Node) admitBlob(p peer.ID, s network.Stream) (*inboundBlob, string) {
	if n.penalized(p) {
		return nil, RefusePenalized
	}
	if !n.blobRate.allow(p) {
		return nil, RefuseBlobRate
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.blobsPerPeer[p] >= n.cfg.Limits.BlobsPerPeer {
		return nil, RefuseBlobBusy
	}
	if len(n.blobStreams)-n.blobsInFlight >= maxPendingBlobs {
		var oldest *inboundBlob
		for b := range n.blobStreams {
			if !b.serving && (oldest == nil || b.since.Before(oldest.since)) {
				oldest = b
			}
		}
		n.dropBlobLocked(oldest)
		n.refused.add(RefuseBlobEvicted, 1)
	}
	b := &inboundBlob{p: p, s: s, since: now}
	b.progress.Store(now.UnixNano())
	n.blobStreams[b] = struct{}{}
	n.blobsPerPeer[p]++
	return b, ""
}

// serveBlobSlot moves a pending stream whose header was read to a serving
// slot, or names the refusal. Of maxInboundBlobs slots, peers that are not
// valued (valuedLocked) hold at most maxInboundBlobs - reservedBlobs. When
// there is no room a served stream whose writes have not moved for
// blobStallEvict (a reader that does not drain) is ended for the
// newcomer, one of a peer that is not valued first; a valued newcomer
// short of its reserve ends the most stalled stream of a peer that is not
// valued, whatever its state.
func (n *Node) serveBlobSlot(b *inboundBlob) string {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.blobStreams[b]; !ok {
		return blobEvictedMeanwhile // counted as blob_evicted when it was
	}
	if n.closed {
		return RefuseBlobBusy
	}
	valued := n.valuedLocked(b.p, now)
	nValued := 0
	for o := range n.blobStreams {
		if o.serving && o.valued {
			nValued++
		}
	}
	share := maxInboundBlobs - reservedBlobs
	nOther := n.blobsInFlight - nValued
	if n.blobsInFlight >= maxInboundBlobs || (!valued && nOther >= share) {
		owed := valued && nValued < reservedBlobs
		var victim *inboundBlob
		for o := range n.blobStreams {
			switch {
			case !o.serving:
				continue
			case owed:
				if o.valued {
					continue
				}
			case o.stalled(now) < blobStallEvict:
				continue
			case !valued && o.valued && nOther >= share:
				continue // would not make room in the newcomer's share
			}
			if victim == nil || (victim.valued && !o.valued) || (victim.valued == o.valued && o.stalled(now) > victim.stalled(now)) {
				victim = o
			}
		}
		if victim == nil {
			return RefuseBlobBusy
		}
		n.dropBlobLocked(victim)
		n.refused.add(RefuseBlobEvicted, 1)
	}
	b.serving, b.valued = true, valued
	b.progress.Store(now.UnixNano())
	n.blobsInFlight++
	return ""
}

// blobEvictedMeanwhile: serveBlobSlot found its stream evicted while it
// waited for its header (already counted, not counted again).
const blobEvictedMeanwhile = "evicted meanwhile"

// dropBlobLocked ends a blob stream and frees what it held (once). n.mu
// held.
func (n *Node) dropBlobLocked(b *inboundBlob) {
	if b == nil {
		return
	}
	if _, ok := n.blobStreams[b]; !ok {
		return
	}
	go b.s.Reset() // not under n.mu: a reset can wait on a peer that does not read
	delete(n.blobStreams, b)
	if b.serving {
		n.blobsInFlight--
	}
	if n.blobsPerPeer[b.p]--; n.blobsPerPeer[b.p] <= 0 {
		delete(n.blobsPerPeer, b.p)
	}
}

func (n *Node) releaseBlob(b *inboundBlob) {
	n.mu.Lock()
	if _, ok := n.blobStreams[b]; ok {
		delete(n.blobStreams, b)
		if b.serving {
			n.blobsInFlight--
		}
		if n.blobsPerPeer[b.p]--; n.blobsPerPeer[b.p] <= 0 {
			delete(n.blobsPerPeer, b.p)
		}
	}
	n.mu.Unlock()
}

// blobFault counts, logs (at most once a minute per peer at Warn) and
// penalizes a client's protocol fault.
func (n *Node) blobFault(p peer.ID, err error) {
	n.refused.add(RefuseBlobFault, 1)
	n.peerFaultLog(p, "blob: request breaks the protocol", "err", err)
	n.Penalize(p, "blob request broke the protocol")
}

func (n *Node) handleBlob(s network.Stream) {
	p := s.Conn().RemotePeer()
	b, why := n.admitBlob(p, s)
	if b == nil {
		n.refused.add(why, 1)
		_ = s.Reset()
		return
	}
	defer n.releaseBlob(b)
	_ = s.SetReadDeadline(time.Now().Add(blobHeaderTimeout))
	var req BlobRequest
	if err := readMsg(bufio.NewReader(io.LimitReader(s, maxBlobHeader+16)), maxBlobHeader, &req); err != nil {
		if peerFault(err) {
			n.blobFault(p, err)
		} else {
			n.log.Debug("blob: no request", "peer", p, "err", err)
		}
		_ = s.Reset()
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(blobIOTimeout))
	reply := func(r BlobResponse) {
		_ = writeMsg(s, r, maxBlobHeader)
		_ = s.Close()
	}
	c, err := parseBlobCID(req.CID)
	if err != nil {
		n.blobFault(p, err)
		reply(BlobResponse{Error: truncate(err.Error(), 256)})
		return
	}
	if why := n.serveBlobSlot(b); why != "" {
		if why != blobEvictedMeanwhile {
			n.refused.add(why, 1)
		}
		_ = s.Reset() // the client retries (FetchBlobAny)
		return
	}
	if n.deps.Blobs == nil {
		reply(BlobResponse{Error: "not found"})
		return
	}
	r, size, ok, err := n.openBlob(c)
	switch {
	case err != nil:
		n.errorLog("blob open "+c, "blob: open", "cid", c, "err", err)
		reply(BlobResponse{Error: "internal error"})
		return
	case !ok:
		reply(BlobResponse{Error: "not found"})
		return
	}
	defer r.Close()
	if size > n.cfg.MaxBlobSize {
		reply(BlobResponse{Error: "blob larger than the server's limit"})
		return
	}
	b.progress.Store(time.Now().UnixNano()) // the server's own work (hashing, waiting for it) is no stall
	w := progressWriter{w: s, at: &b.progress}
	if err := writeMsg(w, BlobResponse{Size: size}, maxBlobHeader); err != nil {
		_ = s.Reset()
		return
	}
	if _, err := io.CopyN(w, r, size); err != nil {
		n.log.Debug("blob: send", "peer", p, "cid", c, "err", err)
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// openBlob opens a blob for sending. With a BlobOpener the blob streams
// from disk, checked against its CID once per process per file version
// (verifiedBlobs: its size and modification time; again after
// blobVerifiedFor, against bit rot) instead of on every request: the
// store names a blob by the CID of the bytes it wrote. Without a
// BlobOpener it falls back to GetBlob (the whole blob in memory).
func (n *Node) openBlob(c string) (io.ReadCloser, int64, bool, error) {
	bo, ok := n.deps.Blobs.(BlobOpener)
	if !ok {
		data, ok, err := n.deps.Blobs.GetBlob(c)
		if err != nil || !ok {
			return nil, 0, ok, err
		}
		return io.NopCloser(bytes.NewReader(data)), int64(len(data)), true, nil
	}
	r, size, ok, err := bo.OpenBlob(c)
	if err != nil || !ok {
		return nil, 0, ok, err
	}
	if size > n.cfg.MaxBlobSize {
		return r, size, true, nil // refused by size; not worth hashing
	}
	if err := n.blobOK.check(blobStampOf(c, size, r), func() error { return hashBlob(c, size, r) }); err != nil {
		r.Close()
		return nil, 0, false, err
	}
	return r, size, true, nil
}

// hashBlob checks that r's size bytes hash to c and rewinds r.
func hashBlob(c string, size int64, r io.ReadSeeker) error {
	h := sha256.New()
	got, err := io.Copy(h, io.LimitReader(r, size+1))
	if err != nil {
		return err
	}
	if got != size {
		return fmt.Errorf("%w: held copy of %s has %d bytes, want %d", ErrBlobMismatch, c, got, size)
	}
	if sum := vocab.CIDOfSHA256([32]byte(h.Sum(nil))); sum != c {
		return fmt.Errorf("%w: held copy of %s hashes to %s", ErrBlobMismatch, c, sum)
	}
	_, err = r.Seek(0, io.SeekStart)
	return err
}

// blobStamp names one version of a held blob: its CID and size, and for
// a file its modification time (a rewrite changes it).
type blobStamp struct {
	cid   string
	size  int64
	mtime int64
}

func blobStampOf(c string, size int64, r any) blobStamp {
	st := blobStamp{cid: c, size: size}
	if f, ok := r.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := f.Stat(); err == nil {
			st.mtime = fi.ModTime().UnixNano()
		}
	}
	return st
}

// blobVerifiedFor is how long a blob version checked against its CID is
// served without hashing it again (bit rot is caught within it);
// maxVerifiedBlobs bounds the table.
var blobVerifiedFor = time.Hour

const maxVerifiedBlobs = 4096

// verifiedBlobs remembers which held blob versions hash to their CID, and
// which do not, so a blob is hashed once per blobVerifiedFor however many
// peers ask for it, and concurrent first requests hash it once.
type verifiedBlobs struct {
	mu      sync.Mutex
	checked map[blobStamp]blobVerdict
	busy    map[string]chan struct{} // CIDs being hashed
	hashes  atomic.Int64             // blobs hashed (tests)
}

type blobVerdict struct {
	at  time.Time
	err error
}

func (v *verifiedBlobs) check(st blobStamp, hash func() error) error {
	for {
		v.mu.Lock()
		if vd, ok := v.checked[st]; ok && time.Since(vd.at) < blobVerifiedFor {
			v.mu.Unlock()
			return vd.err
		}
		if ch := v.busy[st.cid]; ch != nil {
			v.mu.Unlock()
			<-ch
			continue
		}
		if v.busy == nil {
			v.busy = make(map[string]chan struct{})
			v.checked = make(map[blobStamp]blobVerdict)
		}
		ch := make(chan struct{})
		v.busy[st.cid] = ch
		v.mu.Unlock()

		v.hashes.Add(1)
		err := hash()
		var mismatch error
		if errors.Is(err, ErrBlobMismatch) {
			mismatch = err // remembered: asking again costs no hashing
		}
		v.mu.Lock()
		delete(v.busy, st.cid)
		if err == nil || mismatch != nil {
			if len(v.checked) >= maxVerifiedBlobs {
				for k, vd := range v.checked {
					if time.Since(vd.at) >= blobVerifiedFor {
						delete(v.checked, k)
					}
				}
				if len(v.checked) >= maxVerifiedBlobs {
					clear(v.checked)
				}
			}
			v.checked[st] = blobVerdict{at: time.Now(), err: mismatch}
		}
		v.mu.Unlock()
		close(ch)
		return err
	}
}

// FetchBlob asks peer p for the blob with CID cidStr, checks the bytes
// against the CID and, if the node has a BlobStore, stores them.
func (n *Node) FetchBlob(ctx context.Context, p peer.ID, cidStr string) ([]byte, error) {
	return n.fetchBlob(ctx, p, cidStr, true)
}

func (n *Node) fetchBlob(ctx context.Context, p peer.ID, cidStr string, keep bool) ([]byte, error) {
	c, err := parseBlobCID(cidStr)
	if err != nil {
		return nil, fmt.Errorf("fetch blob: %w", err)
	}
	s, err := n.host.NewStream(ctx, p, BlobProtocol)
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w", c, p, err)
	}
	defer s.Reset() // no-op after Close
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	_ = s.SetDeadline(time.Now().Add(blobIOTimeout))
	if err := writeMsg(s, BlobRequest{CID: c}, maxBlobHeader); err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w", c, p, err)
	}
	_ = s.CloseWrite()
	r := bufio.NewReader(s)
	var resp BlobResponse
	if err := readMsg(r, maxBlobHeader, &resp); err != nil {
		if errors.Is(err, network.ErrReset) {
			err = fmt.Errorf("%w: %w", errRefused, err) // no answer at all: the server refused the stream
		}
		return nil, fmt.Errorf("fetch blob %s from %s: %w", c, p, err)
	}
	switch {
	case resp.Error == "not found":
		return nil, fmt.Errorf("fetch blob %s from %s: %w", c, p, ErrNotFound)
	case resp.Error != "":
		if len(resp.Error) > 512 {
			resp.Error = resp.Error[:512]
		}
		return nil, fmt.Errorf("fetch blob %s from %s: peer error: %q", c, p, resp.Error)
	case resp.Size < 0 || resp.Size > n.cfg.MaxBlobSize:
		n.refused.add(RefuseBlobInvalid, 1)
		n.Penalize(p, "blob answer announces an impossible size")
		return nil, fmt.Errorf("fetch blob %s from %s: %w: %w: %d bytes (max %d)", c, p, ErrProtocol, ErrTooLarge, resp.Size, n.cfg.MaxBlobSize)
	}
	data := make([]byte, resp.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w: %w", c, p, ErrProtocol, err)
	}
	if err := checkBlob(c, data); err != nil {
		n.refused.add(RefuseBlobInvalid, 1)
		n.Penalize(p, "blob does not match its CID")
		return nil, fmt.Errorf("fetch blob from %s: %w", p, err)
	}
	_ = s.Close()
	if keep && n.deps.Blobs != nil {
		if _, err := n.deps.Blobs.PutBlob(data); err != nil {
			return nil, fmt.Errorf("fetch blob %s: store: %w", c, err)
		}
	}
	return data, nil
}

// errRefused marks a blob stream reset before any answer: the server's
// limits refused it (FetchBlobAny retries).
var errRefused = errors.New("stream refused")

// perPeerBlobTimeout bounds one peer's answer in FetchBlobAny.
const perPeerBlobTimeout = 2 * time.Minute

// FetchBlobAny asks the connected peers, one after the other, for the blob
// with CID cidStr and returns the first answer whose bytes match the CID
// (a liar is penalized), with the peer that gave it; keep stores it in the
// node's BlobStore too. maxSize bounds the answer (≤ the node's
// MaxBlobSize). It fails with ErrNotFound when no connected peer has it.
func (n *Node) FetchBlobAny(ctx context.Context, cidStr string, maxSize int64, keep bool) ([]byte, peer.ID, error) {
	if _, err := parseBlobCID(cidStr); err != nil {
		return nil, "", fmt.Errorf("fetch blob: %w", err)
	}
	if maxSize > n.cfg.MaxBlobSize {
		return nil, "", fmt.Errorf("fetch blob %s: %w: %d bytes, this node accepts at most %d", cidStr, ErrTooLarge, maxSize, n.cfg.MaxBlobSize)
	}
	peers := n.host.Network().Peers()
	if len(peers) == 0 {
		return nil, "", fmt.Errorf("fetch blob %s: %w: no connected peers", cidStr, ErrNotFound)
	}
	var errs []error
	for _, p := range peers {
		var data []byte
		var err error
		// A peer that refuses the stream (its per-peer stream cap or
		// request rate, limits.go) resets it before any answer: wait and
		// ask it again a few times before moving on.
		for attempt, wait := 0, 250*time.Millisecond; ; attempt, wait = attempt+1, wait*2 {
			pctx, cancel := context.WithTimeout(ctx, perPeerBlobTimeout)
			data, err = n.fetchBlob(pctx, p, cidStr, keep)
			cancel()
			if err == nil || !errors.Is(err, errRefused) || attempt == 3 || ctx.Err() != nil {
				break
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		if err == nil {
			return data, p, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		if !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("no good answer from %d connected peers: %w", len(peers), errors.Join(errs...))
	}
	return nil, "", fmt.Errorf("fetch blob %s: %w: none of %d connected peers has it", cidStr, ErrNotFound, len(peers))
}

// Penalize lowers a peer's gossipsub score for misbehaviour outside
// gossip (a blob or sync answer that does not check out, a flood): each
// penalty costs PenaltyScore through the application-specific score, so a
// peer that keeps lying is graylisted and then ignored. Penalties halve
// every PenaltyHalfLife, so a peer that stops is heard again.
func (n *Node) Penalize(p peer.ID, why string) {
	now := time.Now()
	n.penMu.Lock()
	if _, ok := n.penalties[p]; !ok && len(n.penalties) >= maxTrackedPeers {
		for q, pen := range n.penalties { // faded penalties of identities long gone
			if pen.at(now) < 0.01 {
				delete(n.penalties, q)
			}
		}
	}
	pen := n.penalties[p]
	pen.value = pen.at(now) + 1
	pen.since = now
	n.penalties[p] = pen
	n.penMu.Unlock()
	level := slog.LevelDebug
	if n.logLim.allow("penalty "+string(p), faultLogEvery) {
		level = slog.LevelWarn // once a minute per peer: a peer at fault in a loop cannot fill the log
	}
	n.log.Log(context.Background(), level, "peer penalized", "peer", p, "why", why, "penalties", fmt.Sprintf("%.1f", pen.value))
}

// PenaltyScore is what one penalty takes off a peer's score.
const PenaltyScore = -50

// OverRateScore offsets the first-delivery reward (TopicScoreParams: at
// most FirstMessageDeliveriesCap) of a peer that forwarded claims over its
// gossip rate within OverRateMemory: a flood, even of valid claims, earns
// no standing (issue 20 measured flooders at +18–20).
const (
	OverRateScore  = -20
	OverRateMemory = 10 * time.Minute
)

// noteOverRate remembers that p forwarded over its rate now.
func (n *Node) noteOverRate(p peer.ID) {
	now := time.Now()
	n.penMu.Lock()
	defer n.penMu.Unlock()
	if _, ok := n.overRated[p]; !ok && len(n.overRated) >= maxTrackedPeers {
		for q, at := range n.overRated { // identities that left: their entries expire
			if now.Sub(at) >= OverRateMemory {
				delete(n.overRated, q)
			}
		}
		if len(n.overRated) >= maxTrackedPeers {
			return // every entry is fresh: the flood is already scored down
		}
	}
	n.overRated[p] = now
}

// PenaltyHalfLife is how fast penalties fade.
const PenaltyHalfLife = 10 * time.Minute

// penalty is a peer's penalty count, decaying from since.
type penalty struct {
	value float64
	since time.Time
}

func (p penalty) at(now time.Time) float64 {
	if p.value == 0 {
		return 0
	}
	return p.value * math.Exp2(-now.Sub(p.since).Seconds()/PenaltyHalfLife.Seconds())
}

// peerFault reports whether err is the remote peer's fault (bad bytes, a
// lie), not the network's (timeout, reset, closed stream).
func peerFault(err error) bool {
	if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrBlobMismatch) {
		return false
	}
	var ne interface{ Timeout() bool }
	switch {
	case errors.As(err, &ne) && ne.Timeout(),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, network.ErrReset), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}

func (n *Node) scoreParams() *pubsub.PeerScoreParams {
	ps := PeerScoreParams()
	ps.AppSpecificScore = func(p peer.ID) float64 {
		n.penMu.Lock()
		defer n.penMu.Unlock()
		now := time.Now()
		s := PenaltyScore * n.penalties[p].at(now)
		if at, ok := n.overRated[p]; ok {
			if now.Sub(at) < OverRateMemory {
				s += OverRateScore
			} else {
				delete(n.overRated, p)
			}
		}
		return s
	}
	return ps
}
