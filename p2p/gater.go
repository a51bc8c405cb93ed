package p2p

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// gater refuses connections with blocked peers, then asks an optional
// user gater.
type gater struct {
	mu      sync.RWMutex
	blocked map[peer.ID]bool
	next    connmgr.ConnectionGater
}

var _ connmgr.ConnectionGater = (*gater)(nil)

func newGater(next connmgr.ConnectionGater) *gater {
	return &gater{blocked: make(map[peer.ID]bool), next: next}
}

func (g *gater) set(p peer.ID, blocked bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if blocked {
		g.blocked[p] = true
	} else {
		delete(g.blocked, p)
	}
}

func (g *gater) isBlocked(p peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.blocked[p]
}

func (g *gater) InterceptPeerDial(p peer.ID) bool {
	if g.isBlocked(p) {
		return false
	}
	return g.next == nil || g.next.InterceptPeerDial(p)
}

func (g *gater) InterceptAddrDial(p peer.ID, a multiaddr.Multiaddr) bool {
	if g.isBlocked(p) {
		return false
	}
	return g.next == nil || g.next.InterceptAddrDial(p, a)
}

func (g *gater) InterceptAccept(c network.ConnMultiaddrs) bool {
	return g.next == nil || g.next.InterceptAccept(c)
}

func (g *gater) InterceptSecured(d network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	if g.isBlocked(p) {
		return false
	}
	return g.next == nil || g.next.InterceptSecured(d, p, c)
}

func (g *gater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	if g.isBlocked(c.RemotePeer()) {
		return false, 0
	}
	if g.next == nil {
		return true, 0
	}
	return g.next.InterceptUpgraded(c)
}
