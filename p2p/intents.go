package p2p

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lebowski-dist/lebowski/attest"
)

// IntentsTopic carries signed build intents ("builder B is rebuilding
// recipe R, expect N minutes"), so volunteers share rebuild work
// (docs/SCHEDULER.md). Every node subscribes.
const IntentsTopic = "/lebowski/1/intents"

// IntentRenewer is optionally implemented by an Inlet: RenewIntents
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
// delivers to the Inlet.
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
	r, ok := n.inlet.(IntentRenewer)
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
//
// Replays: a signed intent this node accepted once (the same signed
// payload, however the message around it is re-encoded) is ignored, before
// its signature is checked when the payload can be read off the message;
// a signer over its own rate (Limits.IntentsPerSigner, counted after the
// signature is checked) is ignored whoever forwards it.
func (n *Node) validateIntent(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if len(msg.Data) > attest.MaxIntentSize {
		return pubsub.ValidationReject
	}
	if from == n.host.ID() {
		return pubsub.ValidationAccept // signed here (PublishIntent); not delivered to ourselves
	}
	if id, ok := wireIntentID(msg.Data); ok && n.intentSeen.has(id) {
		n.refused.add(RefuseIntentsReplay, 1)
		return pubsub.ValidationIgnore
	}
	// A relay forwards everyone's intents: those of builders this node
	// trusts pass its rate, as on claim topics (renewals must not be lost
	// behind a busy hub).
	if !n.intentRate.allow(from) && !n.trustedBuilder(wireBuilder(msg.Data)) {
		n.refused.add(RefuseIntentsRate, 1)
		n.overRate(from, msg)
		return pubsub.ValidationIgnore
	}
	now := time.Now()
	in, err := attest.VerifyIntent(msg.Data, n.keys, now)
	switch {
	case errors.Is(err, attest.ErrInvalid):
		n.log.Debug("reject build intent", "from", from, "err", err)
		return pubsub.ValidationReject
	case err != nil:
		n.log.Debug("cannot check build intent", "from", from, "err", err)
		return pubsub.ValidationIgnore
	}
	payload, err := json.Marshal(in) // the signed payload: VerifyIntent checked it is canonical
	if err != nil {
		return pubsub.ValidationIgnore
	}
	// Remembered until a replay could no longer verify.
	id := sha256.Sum256(payload)
	if !n.intentSeen.add(id, in.Issued.Add(in.TTLDuration()+attest.DefaultSkew), now) {
		n.refused.add(RefuseIntentsReplay, 1)
		return pubsub.ValidationIgnore
	}
	if !n.signerRate.allow(in.Builder) {
		n.intentSeen.remove(id) // not accepted: a later delivery is no replay
		n.refused.add(RefuseIntentsSigner, 1)
		return pubsub.ValidationIgnore
	}
	msg.ValidatorData = in
	return pubsub.ValidationAccept
}

// wireIntentID is the replay ID of a signed intent read off the message
// without verifying anything: the sha256 of its payload (which names the
// signer and the signing time). Only a hint: the ID of the verified
// payload is what is remembered.
func wireIntentID(data []byte) ([32]byte, bool) {
	b64, ok := stringMember(data, `"payload":"`, len(data))
	if !ok {
		return [32]byte{}, false
	}
	payload := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	m, err := base64.StdEncoding.Decode(payload, b64)
	if err != nil {
		return [32]byte{}, false
	}
	return sha256.Sum256(payload[:m]), true
}

// maxIntentReplays bounds the replay table. When it is full of live
// entries a tenth of them, at random, is forgotten: a replay of one of
// those is accepted once more, and still cannot make its intent count
// longer (intentsLoop) or look newer (the scheduler keeps each builder's
// newest message).
const maxIntentReplays = 100000

// intentReplays remembers the signed intents accepted, until a replay of
// each could no longer verify.
type intentReplays struct {
	mu    sync.Mutex
	until map[[32]byte]time.Time
	swept time.Time
}

func (r *intentReplays) has(id [32]byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.until[id]
	return ok
}

// add records id until the given time; false if it was recorded already.
func (r *intentReplays) remove(id [32]byte) {
	r.mu.Lock()
	delete(r.until, id)
	r.mu.Unlock()
}

func (r *intentReplays) add(id [32]byte, until, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.until == nil {
		r.until = make(map[[32]byte]time.Time)
	}
	if _, ok := r.until[id]; ok {
		return false
	}
	if now.Sub(r.swept) >= time.Minute || len(r.until) >= maxIntentReplays {
		r.swept = now
		for k, t := range r.until {
			if !now.Before(t) {
				delete(r.until, k)
			}
		}
		if len(r.until) >= maxIntentReplays {
			drop := len(r.until) - maxIntentReplays*9/10
			for k := range r.until { // random order
				if drop--; drop < 0 {
					break
				}
				delete(r.until, k)
			}
		}
	}
	r.until[id] = until
	return true
}

// intentsLoop hands accepted intents to Deps.Intents, received at the
// local time, but never later than the signing time plus the allowed
// clock skew: an intent counts until min(receipt, issued + skew) + TTL,
// so a replay delivered late (to a node that had not seen it) cannot
// make it count longer than its signer asked for.
func (n *Node) intentsLoop(sub *pubsub.Subscription) {
	defer n.wg.Done()
	for {
		msg, err := sub.Next(n.ctx)
		if err != nil {
			return
		}
		in, ok := msg.ValidatorData.(*attest.Intent)
		if !ok || msg.ReceivedFrom == n.host.ID() {
			continue
		}
		n.inlet.Intent(in, msg.ReceivedFrom.String(), intentReceived(in, time.Now()))
	}
}

// intentReceived is the receipt time an intent is counted from.
func intentReceived(in *attest.Intent, now time.Time) time.Time {
	return minTime(now, in.Issued.Add(attest.DefaultSkew))
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
