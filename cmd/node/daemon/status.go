package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/lebowski-dist/lebowski/cmd/internal/statuspage"
)

// listenStatus opens status_addr and returns the status page's server
// (package statuspage), its events followed until ctx ends.
func (d *Daemon) listenStatus(ctx context.Context) (*http.Server, net.Listener, error) {
	s := statuspage.New(d.node, statuspage.Options{Addr: d.cfg.StatusAddr, Threshold: d.cfg.Threshold, MinTrusted: d.cfg.MinTrusted},
		d.log.With("sub", "status"))
	if err := s.Start(ctx); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", d.cfg.StatusAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("status page: listen %s: %w (choose another status_addr, or leave it empty to turn the page off)", d.cfg.StatusAddr, err)
	}
	d.log.Info("status page", "url", "http://"+ln.Addr().String()+"/")
	// No write timeout for the whole response: /events streams. Each
	// handler sets its own write deadline.
	return newHTTPServer(s.Handler(), 30*time.Second, 0), limitListener(ln), nil
}
