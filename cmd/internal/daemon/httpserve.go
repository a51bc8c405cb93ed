package daemon

import (
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Every HTTP server of the daemon (API sockets, metrics, repository) has
// header/read/idle deadlines, a header size cap and a cap on open
// connections, so slow or idle clients cannot hold connections and file
// descriptors until the process runs out (docs/SECURITY.md).
var (
	httpHeaderTimeout = 10 * time.Second // a variable: tests shorten it
	httpIdleTimeout   = time.Minute
)

const (
	httpMaxHeader = 16 << 10
	// httpMaxConns caps the open connections of one server.
	httpMaxConns = 128
)

// newHTTPServer returns a server for h with the daemon's deadlines.
// readTimeout bounds reading one request with its body; writeTimeout
// bounds writing one response (0: unbounded, for event streams).
func newHTTPServer(h http.Handler, readTimeout, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeader,
	}
}

// limitListener caps the connections accepted at once on ln.
func limitListener(ln net.Listener) net.Listener { return netutil.LimitListener(ln, httpMaxConns) }
