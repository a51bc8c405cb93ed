package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/lebowski-dist/lebowski/cmd/internal/daemon"
	"github.com/lebowski-dist/lebowski/cmd/internal/node"
	"github.com/lebowski-dist/lebowski/store"
)

// backend returns the running daemon's API when it answers on the socket,
// else a Service over the local store (opened for this command only).
func (g *globals) backend(ctx context.Context) (node.Backend, func(), error) {
	if c, err := node.Dial(ctx, g.socket); err == nil {
		g.log.Info("using lebowskid", "socket", g.socket)
		return c, func() {}, nil
	}
	svc, closeFn, err := g.localService()
	if err != nil {
		return nil, nil, err
	}
	return node.Local{Service: svc}, closeFn, nil
}

// localService opens the node's store directly.
func (g *globals) localService() (*node.Service, func(), error) {
	l := g.layout()
	if err := l.Ensure(); err != nil {
		return nil, nil, envErr(err)
	}
	st, err := store.Open(l.StoreDB(), store.WithLogger(g.log))
	if errors.Is(err, store.ErrLocked) {
		return nil, nil, envErr(fmt.Errorf("%w: lebowskid probably runs with this data dir but its socket %s did not answer; pass --socket or stop it", err, g.socket))
	}
	if err != nil {
		return nil, nil, envErr(err)
	}
	cfg, err := daemon.LoadConfig(l.Config(), true)
	if err != nil {
		st.Close()
		return nil, nil, usageErr("%v", err)
	}
	cfg.Defaults()
	svc := &node.Service{Store: st, Trusted: cfg.TrustedKeys, Threshold: cfg.Threshold, Log: g.log}
	if id, _, err := l.LoadIdentity(false, ""); err == nil {
		svc.Own = id.Fingerprint()
	}
	return svc, func() { st.Close() }, nil
}
