package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lebowski-dist/lebowski/attest"
)

// KeysTopic carries builder key announcements: binary OpenPGP public key
// blocks (a key with its self-signatures, certifications by other keys
// and revocation signatures). Every node subscribes (docs/NETWORK.md).
const KeysTopic = "/lebowski/1/keys"

// MaxKeyMessage bounds one key announcement.
const MaxKeyMessage = 64 << 10

// ErrBadKey: bytes that are not an acceptable key announcement.
var ErrBadKey = errors.New("invalid key announcement")

// Key announcement timing (variables so tests can shorten them).
var (
	// keyAnnounceDelay: after a new peer is identified, the node waits
	// this long (coalescing further peers) so the peer's subscriptions
	// and the mesh exist when it announces.
	keyAnnounceDelay = 2 * time.Second
	// keyAnnounceMinGap: an announcement triggered by a new peer is
	// skipped when the last one is more recent, so connection churn
	// costs at most one announcement per key and gap.
	keyAnnounceMinGap = time.Minute
)

const maxAnnounceKeys = 4

// Bounds on the packets of one announcement, so that parsing it (which
// verifies every self-signature) stays cheap: a stored key carries at most
// attest.MaxCertifications certifications and attest.MaxRevocations
// revocations after a merge, plus its self-signatures.
const (
	maxKeySignatures = attest.MaxCertifications + attest.MaxRevocations + 32
	maxKeyUserIDs    = 16
	maxKeySubkeys    = 16
)

// countKeyPackets refuses announcements with more signatures, user IDs or
// subkeys than maxKey*: reading packets costs no crypto.
func countKeyPackets(data []byte) error {
	r := packet.NewReader(bytes.NewReader(data))
	var sigs, uids, subs int
	for {
		p, err := r.Next()
		if err != nil {
			return nil // EOF, or what ParsePublicKey will report
		}
		switch k := p.(type) {
		case *packet.Signature:
			sigs++
		case *packet.UserId:
			uids++
		case *packet.PublicKey:
			if k.IsSubkey {
				subs++
			}
		}
		if sigs > maxKeySignatures || uids > maxKeyUserIDs || subs > maxKeySubkeys {
			return fmt.Errorf("%w: more than %d signatures, %d user IDs or %d subkeys", ErrBadKey, maxKeySignatures, maxKeyUserIDs, maxKeySubkeys)
		}
	}
}

// ParseKeyAnnouncement checks a keys-topic message: at most
// MaxKeyMessage bytes of one binary (not armored) OpenPGP transferable
// public key with at most maxKeySignatures signatures, maxKeyUserIDs user
// IDs and maxKeySubkeys subkeys, parsed by attest.ParsePublicKey (which
// bounds key sizes and verifies self-signatures and revocation
// signatures), without secret key material. Errors wrap ErrBadKey.
func ParseKeyAnnouncement(data []byte) (*openpgp.Entity, error) {
	switch {
	case len(data) == 0:
		return nil, fmt.Errorf("%w: empty", ErrBadKey)
	case len(data) > MaxKeyMessage:
		return nil, fmt.Errorf("%w: %d bytes (max %d)", ErrBadKey, len(data), MaxKeyMessage)
	case data[0]&0x80 == 0:
		return nil, fmt.Errorf("%w: not a binary OpenPGP packet (armored keys are not announced)", ErrBadKey)
	}
	if err := countKeyPackets(data); err != nil {
		return nil, err
	}
	e, err := attest.ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if e.PrivateKey != nil {
		return nil, fmt.Errorf("%w: %s carries secret key material", ErrBadKey, attest.Fingerprint(e))
	}
	return e, nil
}

// joinKeys joins and subscribes to KeysTopic with its validator, and
// starts the loops that merge and re-announce keys.
func (n *Node) joinKeys() error {
	if err := n.ps.RegisterTopicValidator(KeysTopic, pubsub.ValidatorEx(n.validateKey)); err != nil {
		return fmt.Errorf("join %s: register validator: %w", KeysTopic, err)
	}
	// Messages are identified by author and sequence number (gossipsub's
	// default), not by content as claims are: a re-announcement of the
	// same key must travel again, to reach nodes that joined since.
	t, sub, err := n.joinNodeTopic(KeysTopic)
	if err != nil {
		return err
	}
	n.keysTopic, n.keysSub = t, sub
	n.wg.Add(2)
	go n.keysLoop(sub)
	go n.announceLoop()
	return nil
}

// validateKey is the keys topic's validator. A forwarding peer over its
// rate (Limits.KeysPerSecond) is ignored before anything is parsed, and
// its own floods cost it penalties as on claim topics; an oversize or
// unparsable key is rejected (P4 penalty).
func (n *Node) validateKey(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if len(msg.Data) > MaxKeyMessage {
		n.log.Debug("reject oversize key", "from", from, "bytes", len(msg.Data))
		return pubsub.ValidationReject
	}
	if from != n.host.ID() && !n.keyRate.allow(from) {
		n.refused.add(RefuseKeysRate, 1)
		n.overRate(from, msg)
		return pubsub.ValidationIgnore
	}
	if _, err := ParseKeyAnnouncement(msg.Data); err != nil {
		n.log.Debug("reject key announcement", "from", from, "err", err)
		return pubsub.ValidationReject
	}
	return pubsub.ValidationAccept
}

// overRate counts a message ignored for its forwarder's rate; every
// overflowPenaltyEvery such messages the peer published itself cost it a
// penalty (a relay of someone else's flood is never scored down: the
// pubsub signature makes GetFrom authentic).
func (n *Node) overRate(from peer.ID, msg *pubsub.Message) {
	if peer.ID(msg.GetFrom()) != from {
		return
	}
	n.mu.Lock()
	n.overflow[from]++
	penalize := n.overflow[from]%overflowPenaltyEvery == 0
	n.mu.Unlock()
	if penalize {
		n.Penalize(from, fmt.Sprintf("published over its gossip rate (%d ignored)", overflowPenaltyEvery))
	}
}

// keysLoop hands accepted announcements to the Inlet.
func (n *Node) keysLoop(sub *pubsub.Subscription) {
	defer n.wg.Done()
	for {
		msg, err := sub.Next(n.ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == n.host.ID() {
			continue // our own announcement is stored already
		}
		changed, err := n.inlet.MergeKey(n.ctx, msg.Data, msg.ReceivedFrom.String())
		switch {
		case err != nil && n.ctx.Err() == nil:
			n.log.Warn("merge announced key", "from", msg.ReceivedFrom, "err", err)
		case changed:
			n.log.Debug("key updated from announcement", "from", msg.ReceivedFrom)
		}
	}
}

// PublishKey announces a public key (binary) on KeysTopic. The caller has
// stored it. Every call is a new message that floods the network once.
func (n *Node) PublishKey(ctx context.Context, pub []byte) error {
	e, err := ParseKeyAnnouncement(pub)
	if err != nil {
		return fmt.Errorf("publish key: %w", err)
	}
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return fmt.Errorf("publish key %s: %w", attest.Fingerprint(e), ErrClosed)
	}
	if err := n.keysTopic.Publish(ctx, pub); err != nil {
		return fmt.Errorf("publish key %s on %s: %w", attest.Fingerprint(e), KeysTopic, err)
	}
	n.published()
	return nil
}

// kick signals a loop waiting on c (capacity 1) without blocking: kicks
// that arrive while one is pending merge into it.
func kick(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// announceLoop re-announces Inlet.AnnounceKeys: shortly after a
// new peer is identified (unless announced within keyAnnounceMinGap) and
// every Config.KeyAnnounceInterval (jittered ±25 %), so nodes that joined
// later learn the key and what it carries. Cost: one message per key per
// interval, plus at most one per keyAnnounceMinGap when peers come and go.
func (n *Node) announceLoop() {
	defer n.wg.Done()
	var last time.Time
	jitter := func(d time.Duration) time.Duration { return d*3/4 + time.Duration(rand.Int64N(int64(d/2)+1)) }
	var tick <-chan time.Time // nil: no periodic announcement
	if d := n.cfg.KeyAnnounceInterval; d > 0 {
		tick = time.After(jitter(d))
	}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.announceKick:
			if !n.settleKick(n.announceKick) {
				return
			}
			if !last.IsZero() && time.Since(last) < keyAnnounceMinGap {
				continue
			}
		case <-tick:
			tick = time.After(jitter(n.cfg.KeyAnnounceInterval))
		}
		n.announce()
		last = time.Now()
	}
}

// joinNodeTopic joins and subscribes to one of the topics every node is
// on (keys, intents), whose validator is registered already. Messages are
// identified by author and sequence number (gossipsub's default), not by
// content as claims are: a re-announcement or renewal must travel again,
// to reach nodes that joined since.
func (n *Node) joinNodeTopic(name string) (*pubsub.Topic, *pubsub.Subscription, error) {
	t, err := n.ps.Join(name, pubsub.WithTopicMessageIdFn(pubsub.DefaultMsgIdFn))
	if err != nil {
		return nil, nil, fmt.Errorf("join %s: %w", name, err)
	}
	if err := t.SetScoreParams(TopicScoreParams()); err != nil {
		_ = t.Close()
		return nil, nil, fmt.Errorf("join %s: score params: %w", name, err)
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(256))
	if err != nil {
		_ = t.Close()
		return nil, nil, fmt.Errorf("subscribe %s: %w", name, err)
	}
	return t, sub, nil
}

// settleKick is called when kick fired (a new peer was identified): it
// waits keyAnnounceDelay, so the peer's subscriptions and the mesh exist,
// and swallows the kicks of peers identified meanwhile (one reaction for
// all). It is false when the node is closing.
func (n *Node) settleKick(kick <-chan struct{}) bool {
	w := time.NewTimer(keyAnnounceDelay)
	select {
	case <-n.ctx.Done():
		w.Stop()
		return false
	case <-w.C:
	}
	select {
	case <-kick:
	default:
	}
	return true
}

// announce publishes the keys to re-announce now.
func (n *Node) announce() {
	keys := n.inlet.AnnounceKeys()
	if len(keys) > maxAnnounceKeys {
		keys = keys[:maxAnnounceKeys]
	}
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		err := n.PublishKey(ctx, k)
		cancel()
		if err != nil && n.ctx.Err() == nil {
			n.log.Warn("re-announce key", "err", err)
		}
	}
}
