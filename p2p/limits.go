package p2p

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/lebowski-dist/lebowski/attest"
)

// Limits bound what one remote peer can make this node do: rates per peer
// on gossip, sync and blob requests, concurrency per peer and in total,
// and deadlines on every stream. The defaults (docs/SECURITY.md) are far
// above what an honest peer needs: claims are rare (a build takes
// minutes), a catch-up is one session, a blob fetch is one stream.
type Limits struct {
	// GossipPerSecond is the claims per second accepted from one
	// forwarding peer (token bucket of GossipBurst). Past it, claims are
	// ignored before any signature is checked (no score reward, no
	// penalty), except claims of builders the node trusts; a peer that
	// keeps overflowing is penalized.
	GossipPerSecond float64 `yaml:"gossip_per_second"`
	GossipBurst     int     `yaml:"gossip_burst"`
	// KeysPerSecond is the key announcements per second accepted from one
	// forwarding peer on KeysTopic (token bucket of KeysBurst); past it
	// they are ignored before they are parsed.
	KeysPerSecond float64 `yaml:"keys_per_second"`
	KeysBurst     int     `yaml:"keys_burst"`
	// IntentsPerSecond is the build intents per second accepted from one
	// forwarding peer on IntentsTopic (token bucket of IntentsBurst).
	IntentsPerSecond float64 `yaml:"intents_per_second"`
	IntentsBurst     int     `yaml:"intents_burst"`
	// IntentsPerSigner is the build intents per second accepted from one
	// signing key, whoever forwards them (token bucket of
	// IntentsSignerBurst), counted after the signature is checked (a
	// forgery cannot spend a builder's tokens). It holds back builders the
	// node trusts too, whose intents pass the forwarders' rate.
	IntentsPerSigner   float64 `yaml:"intents_per_signer"`
	IntentsSignerBurst int     `yaml:"intents_signer_burst"`
	// SyncSessionsPerMinute is how many inbound catch-up sessions one peer
	// may open per minute (burst 5): a peer syncing every 2 s fits.
	SyncSessionsPerMinute float64 `yaml:"sync_sessions_per_minute"`
	// SyncSessionTimeout bounds one inbound catch-up session, however
	// active; SyncRequestsPerSession bounds its round trips.
	SyncSessionTimeout     time.Duration `yaml:"sync_session_timeout"`
	SyncRequestsPerSession int           `yaml:"sync_requests_per_session"`
	// BlobsPerPeer is how many blob streams one peer may have open at
	// once; BlobRequestsPerMinute how many it may start per minute.
	BlobsPerPeer          int     `yaml:"blobs_per_peer"`
	BlobRequestsPerMinute float64 `yaml:"blob_requests_per_minute"`
}

// Limit defaults.
const (
	DefaultGossipPerSecond        = 200
	DefaultGossipBurst            = 2000
	DefaultKeysPerSecond          = 20
	DefaultKeysBurst              = 100
	DefaultIntentsPerSecond       = 10
	DefaultIntentsBurst           = 100
	DefaultSyncSessionsPerMinute  = 30
	DefaultSyncSessionTimeout     = 5 * time.Minute
	DefaultSyncRequestsPerSession = 5000
	DefaultBlobsPerPeer           = 2
	// syncSessionBurst is the token bucket size of SyncSessionsPerMinute.
	syncSessionBurst             = 5
	DefaultBlobRequestsPerMinute = 3000
	// An honest builder signs an intent per build (≤ 16 at once) and
	// renews each every third of its TTL and when peers join (at most
	// once per 10 s): 16 intents per 10 s at worst.
	DefaultIntentsPerSigner   = 2
	DefaultIntentsSignerBurst = 64
	// validateQueue and outboundQueue are gossipsub's queues (default
	// 32): messages waiting for the validator, and per peer for sending.
	validateQueue = 1024
	outboundQueue = 1024
	// maxTrackedPeers bounds the per-peer limiter tables.
	maxTrackedPeers = 10000
	// reservedSyncs of the maxInboundSyncs sync sessions and reservedBlobs
	// of the maxInboundBlobs blob streams are kept for valued peers
	// (Node.valuedLocked): peers nobody vouches for, however many identities
	// they have, hold at most the rest.
	reservedSyncs = 8
	reservedBlobs = 4
	// maxPendingBlobs bounds the blob streams waiting for their request
	// header; they hold no serving slot, and when all are taken the one
	// waiting longest is reset for a newcomer.
	maxPendingBlobs = 64
)

// Stream deadlines (variables so tests can shorten them).
var (
	// syncIdleTimeout is how long a server waits for the next request of
	// a session, and blobHeaderTimeout for a blob request's header.
	syncIdleTimeout   = 15 * time.Second
	blobHeaderTimeout = 10 * time.Second
	// syncEvictAfter: when every inbound sync slot is taken, a new
	// session may evict one that has run this long (an idle one first).
	syncEvictAfter = 30 * time.Second
	// syncIdleEvict: a session that has made no progress (no request
	// read, no response byte written) for this long may be ended for a
	// newcomer whatever its age. An honest client asks again as soon as
	// an answer is in.
	syncIdleEvict = 3 * time.Second
	// blobStallEvict: a blob stream whose writes have not progressed for
	// this long (a reader that does not drain) may be ended for a
	// newcomer. A reader must take 32 KiB per blobStallEvict to keep its
	// slot against newcomers.
	blobStallEvict = 2 * time.Second
	// usefulFor: a peer that delivered a new claim of a builder the node
	// trusts stays valued this long.
	usefulFor = time.Hour
	// faultLogEvery: a peer's protocol faults are logged at Warn at most
	// once per this interval (the rest at Debug).
	faultLogEvery = time.Minute
	// overflowPenaltyEvery: a peer is penalized once per this many
	// gossip messages ignored for its rate.
	overflowPenaltyEvery = 1000
)

func (l *Limits) fill() {
	orDefault(&l.GossipPerSecond, DefaultGossipPerSecond)
	orDefault(&l.GossipBurst, DefaultGossipBurst)
	orDefault(&l.KeysPerSecond, DefaultKeysPerSecond)
	orDefault(&l.KeysBurst, DefaultKeysBurst)
	orDefault(&l.IntentsPerSecond, DefaultIntentsPerSecond)
	orDefault(&l.IntentsBurst, DefaultIntentsBurst)
	orDefault(&l.IntentsPerSigner, DefaultIntentsPerSigner)
	orDefault(&l.IntentsSignerBurst, DefaultIntentsSignerBurst)
	orDefault(&l.SyncSessionsPerMinute, DefaultSyncSessionsPerMinute)
	orDefault(&l.SyncSessionTimeout, DefaultSyncSessionTimeout)
	orDefault(&l.SyncRequestsPerSession, DefaultSyncRequestsPerSession)
	orDefault(&l.BlobsPerPeer, DefaultBlobsPerPeer)
	orDefault(&l.BlobRequestsPerMinute, DefaultBlobRequestsPerMinute)
}

// orDefault sets *v to def unless it is positive.
func orDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// keyRates is a token bucket per key (a peer, a signing key). The table
// is bounded: when full, buckets that are full again (keys quiet for a
// while) are dropped first.
type keyRates[K comparable] struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	m     map[K]*rate.Limiter
}

// peerRates is a token bucket per peer.
type peerRates = keyRates[peer.ID]

func newPeerRates(perSecond float64, burst int) *peerRates {
	return newKeyRates[peer.ID](perSecond, burst)
}

func newKeyRates[K comparable](perSecond float64, burst int) *keyRates[K] {
	return &keyRates[K]{limit: rate.Limit(perSecond), burst: burst, m: make(map[K]*rate.Limiter)}
}

func (r *keyRates[K]) allow(p K) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.m[p]
	if l == nil {
		if len(r.m) >= maxTrackedPeers {
			for k, v := range r.m {
				if v.Tokens() >= float64(r.burst) {
					delete(r.m, k)
				}
			}
			if len(r.m) >= maxTrackedPeers {
				clear(r.m)
			}
		}
		l = rate.NewLimiter(r.limit, r.burst)
		r.m[p] = l
	}
	return l.Allow()
}

// Refusal kinds counted by Node.Refusals (exported as metrics).
const (
	RefuseGossipRate  = "gossip_rate"  // claim ignored: the forwarding peer is over its rate
	RefuseSyncRate    = "sync_rate"    // sync session refused: the peer opens too many
	RefuseSyncBusy    = "sync_busy"    // sync session refused: every slot taken by young sessions
	RefuseSyncEvicted = "sync_evicted" // an old sync session was ended to free a slot
	RefuseSyncBudget  = "sync_budget"  // sync session ended: request budget or session deadline
	RefuseSyncInvalid = "sync_invalid" // a sync answer broke the protocol (peer penalized)
	RefuseBlobRate    = "blob_rate"    // blob request refused: the peer asks too often
	RefuseBlobBusy    = "blob_busy"    // blob request refused: per-peer or global streams taken
	RefuseBlobInvalid = "blob_invalid" // a blob answer broke the protocol or its CID (peer penalized)
	RefuseGossipDrop  = "gossip_queue" // claim dropped: the ingest queue was full
	RefuseKeysRate    = "keys_rate"    // key announcement ignored: the forwarding peer is over its rate
	RefuseIntentsRate = "intents_rate" // build intent ignored: the forwarding peer is over its rate
	// RefuseSyncFault: an inbound sync request broke the protocol
	// (malformed, IDs that are not claim IDs): the session is closed and
	// the peer penalized.
	RefuseSyncFault = "sync_fault"
	// RefuseBlobFault: a blob request broke the protocol (peer penalized).
	RefuseBlobFault   = "blob_fault"
	RefuseBlobEvicted = "blob_evicted" // an idle or stalled blob stream was ended to free a slot
	// RefusePenalized: a sync session or blob stream refused because the
	// peer's penalties put it below gossipsub's graylist threshold.
	RefusePenalized     = "penalized"
	RefuseIntentsSigner = "intents_signer_rate" // build intent ignored: its signer is over its rate
	RefuseIntentsReplay = "intents_replay"      // build intent ignored: the same signed intent was accepted before
)

var refuseKinds = []string{RefuseGossipRate, RefuseSyncRate, RefuseSyncBusy, RefuseSyncEvicted, RefuseSyncBudget,
	RefuseSyncInvalid, RefuseBlobRate, RefuseBlobBusy, RefuseBlobInvalid, RefuseGossipDrop, RefuseKeysRate, RefuseIntentsRate,
	RefuseSyncFault, RefuseBlobFault, RefuseBlobEvicted, RefusePenalized, RefuseIntentsSigner, RefuseIntentsReplay}

// refusals counts refused work by kind.
type refusals map[string]*atomic.Uint64

func newRefusals() refusals {
	r := make(refusals, len(refuseKinds))
	for _, k := range refuseKinds {
		r[k] = new(atomic.Uint64)
	}
	return r
}

func (r refusals) add(kind string, n uint64) {
	if c := r[kind]; c != nil {
		c.Add(n)
	}
}

// Refusals returns how much work the node refused since it started, by
// kind (Refuse* constants): the metrics' and tests' view of the limits.
func (n *Node) Refusals() map[string]uint64 {
	out := make(map[string]uint64, len(n.refused))
	for k, v := range n.refused {
		out[k] = v.Load()
	}
	return out
}

// wireBuilder extracts the builder fingerprint from a claim envelope
// (wire or stored form) without verifying anything: the first
// "payload":"<base64>" member (keys and signatures are base64 or armored
// text without that sequence before it) holds the canonical statement.
// It is only a hint for choosing which rate applies; the claim is
// verified in full afterwards. "" if not found.
func wireBuilder(raw []byte) string {
	b64, ok := stringMember(raw, `"payload":"`, len(raw))
	if !ok {
		return ""
	}
	payload := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	m, err := base64.StdEncoding.Decode(payload, b64)
	if err != nil {
		return ""
	}
	fpr, _ := stringMember(payload[:m], `"builder":"`, 128)
	return string(fpr)
}

// stringMember returns the bytes between prefix (which ends in a quote)
// and the next quote, at most max bytes.
func stringMember(b []byte, prefix string, max int) ([]byte, bool) {
	i := bytes.Index(b, []byte(prefix))
	if i < 0 {
		return nil, false
	}
	v := b[i+len(prefix):]
	end := bytes.IndexByte(v, '"')
	if end < 0 || end > max {
		return nil, false
	}
	return v[:end], true
}

// graylistThreshold is gossipsub's graylist threshold (the value in
// PeerScoreThresholds; TestSyncBadRequests checks they agree):
// a peer whose penalties alone take it there is refused sync sessions and
// blob streams too, until they decay.
const graylistThreshold = -80

// penalized reports whether p's penalties (Penalize) put it at or below
// the graylist threshold.
func (n *Node) penalized(p peer.ID) bool {
	n.penMu.Lock()
	defer n.penMu.Unlock()
	return PenaltyScore*n.penalties[p].at(time.Now()) <= graylistThreshold
}

// valuedLocked reports whether p is a valued peer, one that may use the
// slots reserved on the sync and blob servers: its gossipsub score is
// positive (time in a topic mesh, first deliveries of valid messages, no
// penalties; more than 10 identities on one IP score negative), or it
// delivered a new claim of a builder this node trusts within usefulFor.
// n.mu held.
func (n *Node) valuedLocked(p peer.ID, now time.Time) bool {
	if s, ok := n.scores[p]; ok && s > 0 {
		return true
	}
	t, ok := n.useful[p]
	return ok && now.Sub(t) < usefulFor
}

// markUseful notes that from delivered claims (gossip or sync): if one
// of the new ones is by a builder the node trusts, from is valued for
// usefulFor.
func (n *Node) markUseful(claims []*attest.Claim, added []bool, from peer.ID) {
	if from == "" || from == n.host.ID() {
		return
	}
	for i, c := range claims {
		if i >= len(added) || !added[i] || c.Statement == nil || !n.trustedBuilder(c.Statement.Builder) {
			continue
		}
		now := time.Now()
		n.mu.Lock()
		if _, ok := n.useful[from]; !ok && len(n.useful) >= maxTrackedPeers {
			for q, t := range n.useful {
				if now.Sub(t) >= usefulFor {
					delete(n.useful, q)
				}
			}
			if len(n.useful) >= maxTrackedPeers {
				clear(n.useful)
			}
		}
		n.useful[from] = now
		n.mu.Unlock()
		return
	}
}

// logLimiter lets one log line per key through per interval.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *logLimiter) allow(key string, every time.Duration) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < every {
		return false
	}
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	if len(l.last) >= maxTrackedPeers {
		for k, t := range l.last {
			if now.Sub(t) >= every {
				delete(l.last, k)
			}
		}
		if len(l.last) >= maxTrackedPeers {
			return false // a flood of keys: the first of each was logged
		}
	}
	l.last[key] = now
	return true
}

// peerFaultLog logs a remote peer's protocol fault: at Warn once per peer
// per faultLogEvery, at Debug otherwise, so a peer sending garbage in a
// loop cannot fill the log.
func (n *Node) peerFaultLog(p peer.ID, msg string, args ...any) {
	level := slog.LevelDebug
	if n.logLim.allow("fault "+string(p), faultLogEvery) {
		level = slog.LevelWarn
	}
	n.log.Log(context.Background(), level, msg, append([]any{"peer", p}, args...)...)
}

// errorLog logs a local failure (the store) while serving a peer: at
// Error once per kind per 10 s, at Debug otherwise.
func (n *Node) errorLog(kind, msg string, args ...any) {
	level := slog.LevelDebug
	if n.logLim.allow("error "+kind, 10*time.Second) {
		level = slog.LevelError
	}
	n.log.Log(context.Background(), level, msg, args...)
}
