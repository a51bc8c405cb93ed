package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lebowski-dist/lebowski/attest"
)

// IntentsTopic carries signed build intents ("builder B is rebuilding
// recipe R, expect N minutes"), so volunteers share rebuild work
// (docs/SCHEDULER.md). Every node subscribes.
const IntentsTopic = "/lebowski/1/intents"

// IntentSink receives verified intents from the network (Deps.Intents).
type IntentSink interface {
	// Intent is called for every verified intent another node published
	// or relayed; at is when it arrived.
	Intent(in *attest.Intent, from peer.ID, at time.Time)
}

// IntentRenewer is optionally implemented by an IntentSink: RenewIntents
// re-publishes the node's live intents now. The node calls it a little
// after a new peer is identified (at most once per intentRenewGap), so a
// node that joins learns the builds already running without waiting for
// their next periodic renewal.
type IntentRenewer interface {
	RenewIntents()
}

// intentRenewGap spaces renewals triggered by new peers.
var intentRenewGap = 10 * time.Second

// joinIntents joins IntentsTopic with its validator and hands what it
// delivers to Deps.Intents.
func (n *Node) joinIntents() error {
	if err := n.ps.RegisterTopicValidator(IntentsTopic, pubsub.ValidatorEx(n.validateIntent)); err != nil {
		return fmt.Errorf("join %s: register validator: %w", IntentsTopic, err)
	}
	t, sub, err := n.joinNodeTopic(IntentsTopic)
	if err != nil {
		return err
	}
	n.intentsTopic = t
	n.wg.Add(2)
	go n.intentsLoop(sub)
	go n.renewLoop()
	return nil
}

// renewLoop calls IntentRenewer.RenewIntents keyAnnounceDelay after a new
// peer (so its subscription and mesh exist), at most once per
// intentRenewGap: a peer that arrives within the gap is served when the
// gap ends, not skipped.
func (n *Node) renewLoop() {
	defer n.wg.Done()
	r, ok := n.deps.Intents.(IntentRenewer)
	if !ok {
		return
	}
	var last time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.renewKick:
		}
		if !n.settleKick(n.renewKick) {
			return
		}
		if wait := intentRenewGap - time.Since(last); !last.IsZero() && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-n.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			select {
			case <-n.renewKick: // peers identified meanwhile: served by this renewal
			default:
			}
		}
		last = time.Now()
		r.RenewIntents()
	}
}

// validateIntent is IntentsTopic's validator: a forwarding peer over its
// rate (Limits.IntentsPerSecond) is ignored before the signature is
// checked, unless the intent names a builder this node trusts; a
// malformed, expired or badly signed intent is rejected (P4 penalty); one
// by a key this node does not know is ignored (it cannot count here, and
// forwarding what nobody checked would let anyone flood the topic).
func (n *Node) validateIntent(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if len(msg.Data) > attest.MaxIntentSize {
		return pubsub.ValidationReject
	}
	if from == n.host.ID() {
		return pubsub.ValidationAccept // signed here (PublishIntent); not delivered to ourselves
	}
	// A relay forwards everyone's intents: those of builders this node
	// trusts pass its rate, as on claim topics (renewals must not be lost
	// behind a busy hub).
	if !n.intentRate.allow(from) && !n.trustedBuilder(wireBuilder(msg.Data)) {
		n.refused.add(RefuseIntentsRate, 1)
		n.overRate(from, msg)
		return pubsub.ValidationIgnore
	}
	in, err := attest.VerifyIntent(msg.Data, n.keys, time.Now())
	switch {
	case errors.Is(err, attest.ErrInvalid):
		n.log.Debug("reject build intent", "from", from, "err", err)
		return pubsub.ValidationReject
	case err != nil:
		n.log.Debug("cannot check build intent", "from", from, "err", err)
		return pubsub.ValidationIgnore
	}
	msg.ValidatorData = in
	return pubsub.ValidationAccept
}

// intentsLoop hands accepted intents to Deps.Intents.
func (n *Node) intentsLoop(sub *pubsub.Subscription) {
	defer n.wg.Done()
	for {
		msg, err := sub.Next(n.ctx)
		if err != nil {
			return
		}
		in, ok := msg.ValidatorData.(*attest.Intent)
		if !ok || msg.ReceivedFrom == n.host.ID() || n.deps.Intents == nil {
			continue
		}
		n.deps.Intents.Intent(in, msg.ReceivedFrom, time.Now())
	}
}

// PublishIntent publishes a signed intent (attest.SignIntent) on
// IntentsTopic.
func (n *Node) PublishIntent(ctx context.Context, data []byte) error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return fmt.Errorf("publish intent: %w", ErrClosed)
	}
	if len(data) > attest.MaxIntentSize {
		return fmt.Errorf("publish intent: %d bytes (max %d)", len(data), attest.MaxIntentSize)
	}
	if err := n.intentsTopic.Publish(ctx, data); err != nil {
		return fmt.Errorf("publish intent on %s: %w", IntentsTopic, err)
	}
	n.published()
	return nil
}
