package p2p

import (
	"bytes"
	"encoding/base64"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
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
	// validateQueue and outboundQueue are gossipsub's queues (default
	// 32): messages waiting for the validator, and per peer for sending.
	validateQueue = 1024
	outboundQueue = 1024
	// maxTrackedPeers bounds the per-peer limiter tables.
	maxTrackedPeers = 10000
)

// Stream deadlines (variables so tests can shorten them).
var (
	// syncIdleTimeout is how long a server waits for the next request of
	// a session, and blobHeaderTimeout for a blob request's header.
	syncIdleTimeout   = 15 * time.Second
	blobHeaderTimeout = 10 * time.Second
	// syncEvictAfter: when every inbound sync slot is taken, a new
	// session evicts the oldest one if it has run this long.
	syncEvictAfter = 30 * time.Second
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

// peerRates is a token bucket per peer. The table is bounded: when full,
// buckets that are full again (peers quiet for a while) are dropped first.
type peerRates struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	m     map[peer.ID]*rate.Limiter
}

func newPeerRates(perSecond float64, burst int) *peerRates {
	return &peerRates{limit: rate.Limit(perSecond), burst: burst, m: make(map[peer.ID]*rate.Limiter)}
}

func (r *peerRates) allow(p peer.ID) bool {
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
)

var refuseKinds = []string{RefuseGossipRate, RefuseSyncRate, RefuseSyncBusy, RefuseSyncEvicted, RefuseSyncBudget,
	RefuseSyncInvalid, RefuseBlobRate, RefuseBlobBusy, RefuseBlobInvalid, RefuseGossipDrop, RefuseKeysRate, RefuseIntentsRate}

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
