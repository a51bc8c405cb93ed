package daemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/internal/aptrepo"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/p2p"
)

// aptNetwork is what the apt repository service needs from the network.
type aptNetwork struct {
	n   *p2p.Node
	log *slog.Logger
}

var _ aptrepo.Network = aptNetwork{}

func (a aptNetwork) Subscribe(topic string) error { return a.n.Subscribe(topic) }

// SyncSome catches up with up to 4 connected peers, until ctx ends.
func (a aptNetwork) SyncSome(ctx context.Context) {
	for i, p := range a.n.Peers() {
		if i == 4 || ctx.Err() != nil {
			return
		}
		if _, err := a.n.SyncWith(ctx, p.ID); err != nil {
			a.log.Debug("repo: sync", "peer", p.ID, "err", err)
		}
	}
}

// Mirror implements core.Mirrorer with the apt repository service. The
// node is made (core.WithMirror) before the service, which reads through
// it: Run sets d.apt before any API request is served.
func (d *Daemon) Mirror(ctx context.Context, ref vocab.Ref) (*core.MirrorResult, error) {
	if d.apt == nil {
		return nil, errors.New("repo: the apt repository is not set up yet")
	}
	return d.apt.Mirror(ctx, ref)
}
