package core

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Status describes the node.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	st := &Status{Online: n.net != nil, Started: n.started, Version: n.version, Subscriptions: []string{}, RunningBuilds: []string{},
		Builds: []RunningBuild{}, Intents: []BuildIntent{}}
	if n.id != nil {
		st.Builder = n.id.Fingerprint()
	}
	if n.net != nil {
		st.PeerID, st.Addrs, st.Peers = n.net.PeerID(), n.net.Addrs(), len(n.net.Peers())
	}
	if n.subs != nil {
		st.Subscriptions = append(st.Subscriptions, n.subs.Subscriptions()...)
		sort.Strings(st.Subscriptions)
	}
	if n.builds != nil {
		st.QueuedBuilds = n.builds.Queued()
		st.RunningBuilds = append(st.RunningBuilds, n.builds.Running()...)
		sort.Strings(st.RunningBuilds)
		if d, ok := n.builds.(BuildDetails); ok {
			st.Builds = append(st.Builds, d.RunningBuilds()...)
			st.Intents = append(st.Intents, d.BuildIntents()...)
		}
	}
	s, err := n.st.Stats()
	if err != nil {
		return nil, err
	}
	st.Claims = int(s.Claims)
	return st, nil
}

// Peers lists the connected peers.
func (n *Node) Peers(ctx context.Context) ([]PeerInfo, error) {
	if n.net == nil {
		return nil, fmt.Errorf("peers: %w", ErrOffline)
	}
	out := n.net.Peers()
	if out == nil {
		out = []PeerInfo{}
	}
	return out, nil
}

// Subscribe follows or stops following an opinion topic.
func (n *Node) Subscribe(ctx context.Context, ref string, on bool) ([]string, error) {
	r, err := vocab.ParseRef(ref)
	if err != nil {
		return nil, Invalid(fmt.Errorf("subscribe: %w", err))
	}
	if n.subs == nil {
		return nil, fmt.Errorf("subscribe %s: %w", r, ErrOffline)
	}
	if err := n.subs.Subscribe(ctx, r, on); err != nil {
		return nil, err
	}
	out := append([]string{}, n.subs.Subscriptions()...)
	sort.Strings(out)
	return out, nil
}

// Events streams the node's events until ctx ends; a slow reader misses
// events rather than slowing the node.
func (n *Node) Events(ctx context.Context) (<-chan Event, error) {
	ch, cancel := n.events.subscribe()
	context.AfterFunc(ctx, cancel)
	return ch, nil
}

// broker fans events out to subscribers; slow ones miss events.
type broker struct {
	mu     sync.Mutex
	subs   map[chan Event]bool
	closed bool
}

func newBroker() *broker { return &broker{subs: map[chan Event]bool{}} }

func (b *broker) subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 64)
	b.mu.Lock()
	if b.closed {
		close(ch)
	} else {
		b.subs[ch] = true
	}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		if b.subs[ch] {
			delete(b.subs, ch)
			close(ch)
		}
		b.mu.Unlock()
	}
}

func (b *broker) publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		close(ch)
		delete(b.subs, ch)
	}
}

// Mirror asks the daemon's repository to keep and serve ref.
func (n *Node) Mirror(ctx context.Context, ref string) (*MirrorResult, error) {
	r, err := vocab.ParseRef(ref)
	if err != nil {
		return nil, Invalid(err)
	}
	if n.mirror == nil {
		return nil, fmt.Errorf("%w: fetching packages for the apt repository", ErrOffline)
	}
	return n.mirror.Mirror(ctx, r)
}
