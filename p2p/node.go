package p2p

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/multiformats/go-multiaddr"

	"github.com/lebowski-dist/lebowski/attest"
)

// Node is a Lebowski network node.
type Node struct {
	cfg   Config
	deps  Deps
	inlet Inlet // deps.Inlet, or deps.Claims when it is one
	opt   options
	log   *slog.Logger

	host  host.Host
	ps    *pubsub.PubSub
	dht   *dht.IpfsDHT
	mdns  mdns.Service
	gater *gater
	mesh  *meshTracer
	keys  attest.KeyLookup
	boot  []peer.AddrInfo

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// lastPublish is when a message was last handed to pubsub (Unix ns):
	// Close lets the newest ones leave first (see publishDrain).
	lastPublish atomic.Int64

	mu            sync.Mutex
	closed        bool
	topics        map[string]*topicState
	scores        map[peer.ID]float64
	syncing       map[peer.ID]bool         // outbound sync in progress
	inbound       map[peer.ID]*inboundSync // inbound sync sessions being served
	idLists       idListings
	onClaim       []func(*attest.Claim, peer.ID)
	keyCache      map[string][]byte
	syncStats     map[peer.ID]SyncStats
	blobStreams   map[*inboundBlob]struct{} // inbound blob streams, waiting for a header or served
	blobsInFlight int                       // of which served (holding one of maxInboundBlobs)
	blobsPerPeer  map[peer.ID]int           // inbound blob streams per peer, both kinds
	overflow      map[peer.ID]int           // gossip messages ignored for the peer's rate
	useful        map[peer.ID]time.Time     // last new claim of a trusted builder the peer delivered

	// limits (limits.go)
	gossipRate, syncRate, blobRate *peerRates
	keyRate, intentRate            *peerRates
	signerRate                     *keyRates[string] // intents per signing key
	intentSeen                     intentReplays
	blobOK                         verifiedBlobs
	logLim                         logLimiter
	refused                        refusals
	gossipQ                        chan gossipClaim
	// penalties are application penalties (Penalize), under their own
	// lock: gossipsub's event loop reads them (AppSpecificScore) while
	// n.mu may be held around a call into gossipsub.
	penMu     sync.Mutex
	penalties map[peer.ID]penalty
	overRated map[peer.ID]time.Time // when the peer last forwarded over its gossip rate

	// KeysTopic (keys.go)
	keysTopic    *pubsub.Topic
	keysSub      *pubsub.Subscription
	announceKick chan struct{}

	// IntentsTopic (intents.go)
	intentsTopic *pubsub.Topic
	renewKick    chan struct{}
}

type topicState struct {
	topic      *pubsub.Topic
	sub        *pubsub.Subscription
	cancel     context.CancelFunc
	subscribed bool
}

// New starts a node: the libp2p host listening on cfg.ListenAddrs,
// gossipsub with claim validation, the sync and blob protocol handlers,
// subscriptions from cfg.Subscribe, bootstrap connections and optional
// mDNS and DHT discovery. Every goroutine it starts ends when ctx ends or
// Close is called; Close also releases the host and waits for them, so
// the caller that owns ctx owns the node's lifetime.
func New(ctx context.Context, cfg Config, deps Deps, opts ...Option) (*Node, error) {
	if deps.Claims == nil {
		return nil, fmt.Errorf("p2p new: %w: Deps.Claims is required", ErrConfig)
	}
	inlet := deps.Inlet
	if inlet == nil {
		in, ok := deps.Claims.(Inlet)
		if !ok {
			return nil, fmt.Errorf("p2p new: %w: Deps.Inlet is required (Deps.Claims is no Inlet)", ErrConfig)
		}
		inlet = in
	}
	cfg.fill()
	o := defaultOptions()
	for _, fn := range opts {
		fn(&o)
	}
	boot, err := cfg.bootstrapInfos()
	if err != nil {
		return nil, fmt.Errorf("p2p new: %w", err)
	}
	topicsWanted := make([]string, 0, len(cfg.Subscribe))
	for _, s := range cfg.Subscribe {
		t, err := TopicFromSpec(s)
		if err != nil {
			return nil, fmt.Errorf("p2p new: %w: %w", ErrConfig, err)
		}
		topicsWanted = append(topicsWanted, t)
	}
	sk := o.sk
	if sk == nil && cfg.IdentityPath != "" {
		if sk, err = LoadOrCreateIdentity(cfg.IdentityPath); err != nil {
			return nil, fmt.Errorf("p2p new: %w", err)
		}
	}
	n := &Node{
		cfg: cfg, deps: deps, inlet: inlet, opt: o, log: o.log, boot: boot,
		gater:     newGater(o.gater),
		mesh:      newMeshTracer(),
		topics:    make(map[string]*topicState),
		scores:    make(map[peer.ID]float64),
		syncing:   make(map[peer.ID]bool),
		inbound:   make(map[peer.ID]*inboundSync),
		onClaim:   append([]func(*attest.Claim, peer.ID){}, o.onClaim...),
		keyCache:  make(map[string][]byte),
		syncStats: make(map[peer.ID]SyncStats),
		penalties: make(map[peer.ID]penalty),
		overRated: make(map[peer.ID]time.Time),

		blobStreams:  make(map[*inboundBlob]struct{}),
		blobsPerPeer: make(map[peer.ID]int),
		overflow:     make(map[peer.ID]int),
		useful:       make(map[peer.ID]time.Time),
		signerRate:   newKeyRates[string](cfg.Limits.IntentsPerSigner, cfg.Limits.IntentsSignerBurst),
		gossipRate:   newPeerRates(cfg.Limits.GossipPerSecond, cfg.Limits.GossipBurst),
		keyRate:      newPeerRates(cfg.Limits.KeysPerSecond, cfg.Limits.KeysBurst),
		intentRate:   newPeerRates(cfg.Limits.IntentsPerSecond, cfg.Limits.IntentsBurst),
		announceKick: make(chan struct{}, 1),
		renewKick:    make(chan struct{}, 1),
		syncRate:     newPeerRates(cfg.Limits.SyncSessionsPerMinute/60, syncSessionBurst),
		blobRate:     newPeerRates(cfg.Limits.BlobRequestsPerMinute/60, max(1, int(cfg.Limits.BlobRequestsPerMinute/6))),
		refused:      newRefusals(),
		gossipQ:      make(chan gossipClaim, gossipQueue),
	}
	n.keys = deps.Claims
	if deps.Keys != nil {
		n.keys = chainKeys{deps.Keys, deps.Claims}
	}
	n.ctx, n.cancel = context.WithCancel(ctx)

	cm, err := connmgr.NewConnManager(64, 256, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("p2p new: connection manager: %w", err)
	}
	hopts := []libp2p.Option{
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.ConnectionGater(n.gater),
		libp2p.ConnectionManager(cm),
		libp2p.UserAgent("lebowski/1"),
	}
	if sk != nil {
		hopts = append(hopts, libp2p.Identity(sk))
	}
	h, err := libp2p.New(hopts...)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("p2p new: libp2p host on %v: %w", cfg.ListenAddrs, err)
	}
	n.host = h
	fail := func(err error) (*Node, error) {
		n.cancel()
		if n.dht != nil {
			n.dht.Close()
		}
		h.Close()
		return nil, fmt.Errorf("p2p new: %w", err)
	}

	psOpts := []pubsub.Option{
		pubsub.WithMessageSigning(true),
		pubsub.WithStrictSignatureVerification(true),
		pubsub.WithMessageIdFn(messageID),
		pubsub.WithMaxMessageSize(MaxGossipMessageSize),
		pubsub.WithPeerScore(n.scoreParams(), PeerScoreThresholds()),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(n.setScores), o.scorePeriod),
		pubsub.WithLogger(o.log),
		pubsub.WithRawTracer(n.mesh),
		// Room for bursts: the validator's rate check is cheap, so a deep
		// queue drains fast, and an honest claim is not dropped before the
		// validator sees it because a flooder filled a 32-message queue.
		pubsub.WithValidateQueueSize(validateQueue),
		pubsub.WithPeerOutboundQueueSize(outboundQueue),
	}
	if cfg.DHT {
		kd, err := dht.New(h, dht.Mode(dht.ModeAutoServer), dht.ProtocolPrefix("/lebowski"), dht.BootstrapPeers(boot...))
		if err != nil {
			return fail(fmt.Errorf("kademlia dht: %w", err))
		}
		n.dht = kd
		if err := kd.Bootstrap(n.ctx); err != nil {
			return fail(fmt.Errorf("kademlia dht bootstrap: %w", err))
		}
		psOpts = append(psOpts, pubsub.WithDiscovery(drouting.NewRoutingDiscovery(kd)))
	}
	psOpts = append(psOpts, o.psOpts...)
	ps, err := pubsub.NewGossipSub(n.ctx, h, psOpts...)
	if err != nil {
		return fail(fmt.Errorf("gossipsub: %w", err))
	}
	n.ps = ps

	h.SetStreamHandler(SyncProtocol, n.handleSync)
	h.SetStreamHandler(BlobProtocol, n.handleBlob)
	n.wg.Add(1)
	go n.ingestLoop()

	if err := n.joinKeys(); err != nil {
		return fail(err)
	}
	if err := n.joinIntents(); err != nil {
		return fail(err)
	}
	for _, t := range topicsWanted {
		if err := n.Subscribe(t); err != nil {
			return fail(err)
		}
	}
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return fail(fmt.Errorf("event bus: %w", err))
	}
	n.wg.Add(1)
	go n.identifyLoop(sub)
	if cfg.SyncInterval > 0 {
		n.wg.Add(1)
		go n.syncLoop()
	}
	if len(boot) > 0 {
		n.wg.Add(1)
		go n.bootstrapLoop()
	}
	if cfg.MDNS {
		n.mdns = mdns.NewMdnsService(h, "lebowski", mdnsNotifee{n})
		if err := n.mdns.Start(); err != nil {
			return fail(fmt.Errorf("mdns: %w", err))
		}
	}
	n.log.Info("p2p node started", "peer", h.ID(), "addrs", h.Addrs(), "topics", topicsWanted)
	return n, nil
}

func messageID(m *pb.Message) string {
	sum := sha256.Sum256(m.Data)
	return string(sum[:])
}

type chainKeys []attest.KeyLookup

func (c chainKeys) Lookup(fpr string) *openpgp.Entity {
	for _, k := range c {
		if e := k.Lookup(fpr); e != nil {
			return e
		}
	}
	return nil
}

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Host exposes the libp2p host (for tests and diagnostics).
func (n *Node) Host() host.Host { return n.host }

// Addrs are the node's listen addresses with /p2p/<id>, for bootstrap lists.
func (n *Node) Addrs() []multiaddr.Multiaddr {
	ai := peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}
	out, _ := peer.AddrInfoToP2pAddrs(&ai)
	return out
}

// AddrInfo is the node's peer.AddrInfo.
func (n *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}
}

// OnClaim registers a callback for claims newly stored from the network.
// Prefer WithOnClaim so that no early claim is missed.
func (n *Node) OnClaim(fn func(*attest.Claim, peer.ID)) {
	n.mu.Lock()
	n.onClaim = append(n.onClaim, fn)
	n.mu.Unlock()
}

func (n *Node) emit(claims []*attest.Claim, added []bool, from peer.ID) {
	n.markUseful(claims, added, from)
	n.mu.Lock()
	fns := n.onClaim
	n.mu.Unlock()
	if len(fns) == 0 {
		return
	}
	for i, c := range claims {
		if i < len(added) && added[i] {
			for _, fn := range fns {
				fn(c, from)
			}
		}
	}
}

// Connect dials a peer (unless it is blocked).
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := n.host.Connect(ctx, ai); err != nil {
		return fmt.Errorf("connect %s: %w", ai.ID, err)
	}
	return nil
}

// Block refuses all connections with p and closes the existing ones
// (partition tests, banning).
func (n *Node) Block(p peer.ID) {
	n.gater.set(p, true)
	_ = n.host.Network().ClosePeer(p)
}

// Unblock allows connections with p again; it does not redial.
func (n *Node) Unblock(p peer.ID) { n.gater.set(p, false) }

// publishDrain is how long after its last publish Close waits before it
// closes the topics and the host.
const publishDrain = 300 * time.Millisecond

// published notes that a message was handed to pubsub.
func (n *Node) published() { n.lastPublish.Store(time.Now().UnixNano()) }

// Close stops the node: subscriptions, discovery, protocol handlers and
// the host. It waits for the node's goroutines, and first up to
// publishDrain for a message published just before.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	// Publish returns once pubsub has queued a message, before it is
	// written to any peer: a message published just before Close (a
	// stopping build worker withdrawing its intent) would be lost with
	// the streams, and peers would count the intent until its TTL.
	if wait := time.Until(time.Unix(0, n.lastPublish.Load()).Add(publishDrain)); wait > 0 {
		time.Sleep(wait)
	}
	n.host.RemoveStreamHandler(SyncProtocol)
	n.host.RemoveStreamHandler(BlobProtocol)
	var errs []error
	if n.mdns != nil {
		errs = append(errs, n.mdns.Close())
	}
	n.cancel()
	n.mu.Lock()
	for name, ts := range n.topics {
		ts.cancel()
		if ts.sub != nil {
			ts.sub.Cancel()
		}
		_ = ts.topic.Close()
		delete(n.topics, name)
	}
	if n.keysSub != nil {
		n.keysSub.Cancel()
		_ = n.keysTopic.Close()
	}
	n.mu.Unlock()
	if n.dht != nil {
		errs = append(errs, n.dht.Close())
	}
	errs = append(errs, n.host.Close())
	n.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("p2p close: %w", err)
	}
	return nil
}

// PeerInfo describes a connected peer.
type PeerInfo struct {
	ID             peer.ID
	Addrs          []multiaddr.Multiaddr
	Topics         []string // our topics the peer is subscribed to
	Mesh           []string // topics where the peer is in our gossipsub mesh
	Score          float64  // gossipsub score (0 until first inspection)
	HasScore       bool
	ConnectedSince time.Time
	LastSync       SyncStats
}

// Peers lists connected peers, sorted by ID.
func (n *Node) Peers() []PeerInfo {
	byID := make(map[peer.ID]*PeerInfo)
	for _, c := range n.host.Network().Conns() {
		p := c.RemotePeer()
		pi := byID[p]
		if pi == nil {
			pi = &PeerInfo{ID: p, ConnectedSince: c.Stat().Opened}
			byID[p] = pi
		}
		pi.Addrs = append(pi.Addrs, c.RemoteMultiaddr())
		if o := c.Stat().Opened; o.Before(pi.ConnectedSince) {
			pi.ConnectedSince = o
		}
	}
	n.mu.Lock()
	topics := make(map[string]*pubsub.Topic, len(n.topics))
	for name, ts := range n.topics {
		topics[name] = ts.topic
	}
	for p, pi := range byID {
		pi.Score, pi.HasScore = n.scores[p]
		pi.LastSync = n.syncStats[p]
	}
	n.mu.Unlock()
	for name, t := range topics {
		for _, p := range t.ListPeers() {
			if pi := byID[p]; pi != nil {
				pi.Topics = append(pi.Topics, name)
			}
		}
		for _, p := range n.mesh.peers(name) {
			if pi := byID[p]; pi != nil {
				pi.Mesh = append(pi.Mesh, name)
			}
		}
	}
	out := make([]PeerInfo, 0, len(byID))
	for _, pi := range byID {
		sort.Strings(pi.Topics)
		sort.Strings(pi.Mesh)
		out = append(out, *pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// PeerScore returns the last inspected gossipsub score of p.
func (n *Node) PeerScore(p peer.ID) (float64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.scores[p]
	return s, ok
}

func (n *Node) setScores(m map[peer.ID]float64) {
	n.mu.Lock()
	n.scores = m
	n.mu.Unlock()
}

func (n *Node) identifyLoop(sub event.Subscription) {
	defer n.wg.Done()
	defer sub.Close()
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev, ok := <-sub.Out():
			if !ok {
				return
			}
			e := ev.(event.EvtPeerIdentificationCompleted)
			if !hasProtocol(e.Protocols, SyncProtocol) {
				continue
			}
			n.startSync(e.Peer)
			kick(n.announceKick) // announceLoop re-announces the keys
			kick(n.renewKick)    // renewLoop re-publishes the intents
		}
	}
}

func hasProtocol(ps []protocol.ID, want protocol.ID) bool {
	for _, p := range ps {
		if p == want {
			return true
		}
	}
	return false
}

// startSync runs a catch-up with p in the background unless one runs.
func (n *Node) startSync(p peer.ID) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		st, err := n.SyncWith(n.ctx, p)
		switch {
		case errors.Is(err, errSyncBusy):
		case err != nil && n.ctx.Err() == nil:
			n.log.Debug("sync failed", "peer", p, "err", err)
		case err == nil && st.Added > 0:
			n.log.Info("caught up from peer", "peer", p, "added", st.Added, "took", st.Duration)
		}
	}()
}

func (n *Node) syncLoop() {
	defer n.wg.Done()
	for {
		d := n.cfg.SyncInterval
		d = d*3/4 + time.Duration(rand.Int64N(int64(d/2)+1))
		t := time.NewTimer(d)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for _, p := range n.host.Network().Peers() {
			if ok, _ := n.host.Peerstore().SupportsProtocols(p, SyncProtocol); len(ok) > 0 {
				n.startSync(p)
			}
		}
	}
}

func (n *Node) bootstrapLoop() {
	defer n.wg.Done()
	for {
		for _, ai := range n.boot {
			if ai.ID == n.host.ID() || n.gater.isBlocked(ai.ID) || n.host.Network().Connectedness(ai.ID) == network.Connected {
				continue
			}
			ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
			if err := n.host.Connect(ctx, ai); err != nil && n.ctx.Err() == nil {
				n.log.Debug("bootstrap peer unreachable", "peer", ai.ID, "err", err)
			}
			cancel()
		}
		t := time.NewTimer(n.cfg.ReconnectInterval)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.n.host.ID() {
		return
	}
	ctx, cancel := context.WithTimeout(m.n.ctx, 10*time.Second)
	defer cancel()
	if err := m.n.host.Connect(ctx, ai); err != nil {
		m.n.log.Debug("mdns peer unreachable", "peer", ai.ID, "err", err)
	}
}

// loopbackNets are exempt from IP colocation scoring (tests and local
// multi-node setups).
var loopbackNets = func() []*net.IPNet {
	var out []*net.IPNet
	for _, s := range []string{"127.0.0.0/8", "::1/128"} {
		_, n, _ := net.ParseCIDR(s)
		out = append(out, n)
	}
	return out
}()
