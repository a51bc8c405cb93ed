package p2p

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lebowski-dist/lebowski/attest"
)

// PeerScoreParams are the gossipsub peer-scoring parameters (documented in
// docs/NETWORK.md). Topic parameters are set per joined topic with
// TopicScoreParams.
func PeerScoreParams() *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:                      map[string]*pubsub.TopicScoreParams{},
		TopicScoreCap:               50,
		AppSpecificScore:            func(peer.ID) float64 { return 0 },
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -5,
		IPColocationFactorThreshold: 10,
		IPColocationFactorWhitelist: loopbackNets,
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
	}
}

// TopicScoreParams are the per-topic scoring parameters. Claims are rare,
// so mesh delivery-rate penalties (P3, P3b) are off: a quiet topic must not
// make honest peers look bad. Invalid messages (P4) cost -20 × count².
func TopicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		SkipAtomicValidation:           true,
		TopicWeight:                    1,
		TimeInMeshWeight:               0.01,
		TimeInMeshQuantum:              time.Second,
		TimeInMeshCap:                  100,
		FirstMessageDeliveriesWeight:   1,
		FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(time.Hour),
		FirstMessageDeliveriesCap:      20,
		InvalidMessageDeliveriesWeight: -20,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
	}
}

// PeerScoreThresholds are the gossipsub score thresholds.
func PeerScoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             -10,
		PublishThreshold:            -50,
		GraylistThreshold:           -80,
		AcceptPXThreshold:           20,
		OpportunisticGraftThreshold: 2,
	}
}

// join returns the topic state, joining the topic and registering its
// validator on first use. n.mu must be held.
func (n *Node) joinLocked(name string) (*topicState, error) {
	if n.closed {
		return nil, ErrClosed
	}
	if ts := n.topics[name]; ts != nil {
		return ts, nil
	}
	if _, _, err := ParseTopic(name); err != nil {
		return nil, err
	}
	if err := n.ps.RegisterTopicValidator(name, pubsub.ValidatorEx(n.validate)); err != nil {
		return nil, fmt.Errorf("join %s: register validator: %w", name, err)
	}
	t, err := n.ps.Join(name)
	if err != nil {
		_ = n.ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("join %s: %w", name, err)
	}
	if err := t.SetScoreParams(TopicScoreParams()); err != nil {
		_ = t.Close()
		_ = n.ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("join %s: score params: %w", name, err)
	}
	ts := &topicState{topic: t, cancel: func() {}}
	n.topics[name] = ts
	return ts, nil
}

// Subscribe subscribes to a topic (a full topic name or "<pkg>/<opinion>"):
// claims received on it are verified, stored and reported to OnClaim
// callbacks. Subscribing twice is a no-op.
func (n *Node) Subscribe(spec string) error {
	name, err := TopicFromSpec(spec)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	ts, err := n.joinLocked(name)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if ts.subscribed {
		return nil
	}
	sub, err := ts.topic.Subscribe(pubsub.WithBufferSize(1024))
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(n.ctx)
	ts.sub, ts.cancel, ts.subscribed = sub, cancel, true
	n.wg.Add(1)
	go n.readLoop(ctx, sub)
	return nil
}

// Unsubscribe stops receiving a topic. The topic stays joined (publishing
// on it keeps working).
func (n *Node) Unsubscribe(spec string) error {
	name, err := TopicFromSpec(spec)
	if err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	ts := n.topics[name]
	if ts == nil || !ts.subscribed {
		return nil
	}
	ts.cancel()
	ts.sub.Cancel()
	ts.sub, ts.cancel, ts.subscribed = nil, func() {}, false
	return nil
}

// Topics returns the subscribed topics, sorted.
func (n *Node) Topics() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for name, ts := range n.topics {
		if ts.subscribed {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// TopicPeers lists the peers known to be subscribed to a topic we joined.
func (n *Node) TopicPeers(spec string) []peer.ID {
	switch spec {
	case KeysTopic:
		return n.keysTopic.ListPeers()
	case IntentsTopic:
		return n.intentsTopic.ListPeers()
	}
	name, err := TopicFromSpec(spec)
	if err != nil {
		return nil
	}
	n.mu.Lock()
	ts := n.topics[name]
	n.mu.Unlock()
	if ts == nil {
		return nil
	}
	return ts.topic.ListPeers()
}

// Publish gossips a claim on its opinion topic, joining the topic if
// needed. It does not store the claim: the caller has stored it already
// (core.Node.RecordBuild ingests a node's own claim exactly once), and the
// node's own messages are not ingested again when they come back.
func (n *Node) Publish(ctx context.Context, c *attest.Claim) error {
	name, err := ClaimTopic(c)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	wire, err := c.Wire()
	if err != nil {
		return fmt.Errorf("publish %s: encode: %w", c.ID, err)
	}
	if len(wire) > attest.MaxEnvelopeSize {
		return fmt.Errorf("publish %s: %w: %d bytes (max %d)", c.ID, attest.ErrOversize, len(wire), attest.MaxEnvelopeSize)
	}
	n.mu.Lock()
	ts, err := n.joinLocked(name)
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("publish %s: %w", c.ID, err)
	}
	if err := ts.topic.Publish(ctx, wire, pubsub.WithValidatorData(c)); err != nil {
		return fmt.Errorf("publish %s on %s: %w", c.ID, name, err)
	}
	n.published()
	return nil
}

// validate is the topic validator: it runs attest.Verify on every message
// before gossipsub forwards it. A forwarding peer over its rate
// (Limits.GossipPerSecond) is ignored before any signature is checked,
// unless the claim names a builder the node trusts: ignoring gives the
// flooder no first-delivery reward for those, OverRateScore cancels what
// its claims within the rate earned, and every overflowPenaltyEvery
// ignored messages it published itself cost it a penalty.
func (n *Node) validate(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if len(msg.Data) > attest.MaxEnvelopeSize {
		n.log.Debug("reject oversize claim", "from", from, "bytes", len(msg.Data))
		return pubsub.ValidationReject
	}
	if from != n.host.ID() && !n.gossipRate.allow(from) && !n.trustedBuilder(wireBuilder(msg.Data)) {
		n.refused.add(RefuseGossipRate, 1)
		if peer.ID(msg.GetFrom()) == from {
			n.noteOverRate(from) // the flood's author earns no delivery reward (OverRateScore); a relay is not scored down
		}
		n.overRate(from, msg) // only the flood's author is penalized
		return pubsub.ValidationIgnore
	}
	c, err := attest.Verify(msg.Data, n.keys, n.opt.verify)
	if err != nil {
		if errors.Is(err, attest.ErrInvalid) {
			n.log.Debug("reject invalid claim", "from", from, "topic", msg.GetTopic(), "err", err)
			return pubsub.ValidationReject
		}
		n.log.Debug("cannot verify claim", "from", from, "err", err)
		return pubsub.ValidationIgnore
	}
	if want, err := ClaimTopic(c); err != nil || want != msg.GetTopic() {
		n.log.Debug("reject claim on wrong topic", "from", from, "topic", msg.GetTopic(), "want", want)
		return pubsub.ValidationReject
	}
	if from != n.host.ID() {
		has, err := n.deps.Claims.Has(c.ID)
		if err != nil {
			n.log.Warn("store lookup failed", "claim", c.ID, "err", err)
			return pubsub.ValidationIgnore
		}
		if has {
			return pubsub.ValidationIgnore
		}
	}
	msg.ValidatorData = c
	return pubsub.ValidationAccept
}

func (n *Node) trustedBuilder(fpr string) bool {
	if fpr == "" {
		return false
	}
	if n.deps.Keys != nil && n.deps.Keys.Lookup(fpr) != nil {
		return true
	}
	return n.inlet.Votes(fpr)
}

// gossipClaim is a validated claim waiting for ingestLoop.
type gossipClaim struct {
	c    *attest.Claim
	from peer.ID
}

const (
	// gossipQueue bounds the validated claims waiting to be stored.
	gossipQueue = 16384
	// gossipBatch bounds the claims stored in one Ingest call.
	gossipBatch = 1000
)

// readLoop hands the claims delivered on one subscription to ingestLoop.
// It never blocks on the store, so gossipsub's subscription buffer does not
// overflow while a commit runs; if even the queue is full the claim is
// dropped and counted (RefuseGossipDrop) — sync fetches it later.
func (n *Node) readLoop(ctx context.Context, sub *pubsub.Subscription) {
	defer n.wg.Done()
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == n.host.ID() {
			continue // our own: the caller stored it before publishing
		}
		c, ok := msg.ValidatorData.(*attest.Claim)
		if !ok {
			continue
		}
		select {
		case n.gossipQ <- gossipClaim{c: c, from: msg.ReceivedFrom}:
		default:
			n.refused.add(RefuseGossipDrop, 1)
		}
	}
}

// ingestLoop stores gossiped claims in batches: everything waiting, up to
// gossipBatch claims, in one Ingest call (one commit), so the gossip path
// runs at the store's batched rate, not one fsync per message.
func (n *Node) ingestLoop() {
	defer n.wg.Done()
	batch := make([]gossipClaim, 0, gossipBatch)
	for {
		batch = batch[:0]
		select {
		case g := <-n.gossipQ:
			batch = append(batch, g)
		case <-n.ctx.Done():
			return
		}
	fill:
		for len(batch) < gossipBatch {
			select {
			case g := <-n.gossipQ:
				batch = append(batch, g)
			default:
				break fill
			}
		}
		n.ingestGossip(batch)
	}
}

// ingestGossip hands one batch to the Inlet: one call per delivering peer,
// all at once so the store commits them together.
func (n *Node) ingestGossip(batch []gossipClaim) {
	byPeer := make(map[peer.ID][]*attest.Claim)
	var order []peer.ID
	for _, g := range batch {
		if byPeer[g.from] == nil {
			order = append(order, g.from)
		}
		byPeer[g.from] = append(byPeer[g.from], g.c)
	}
	var wg sync.WaitGroup
	for _, p := range order {
		wg.Add(1)
		go func(p peer.ID, claims []*attest.Claim) {
			defer wg.Done()
			added, err := n.inlet.IngestClaims(n.ctx, ViaGossip, p.String(), claims...)
			if err != nil {
				if n.ctx.Err() == nil {
					n.log.Error("store claims from gossip", "peer", p, "claims", len(claims), "err", err)
				}
				return
			}
			n.emit(claims, added, p)
		}(p, byPeer[p])
	}
	wg.Wait()
}
