package daemon

import (
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Every HTTP server of the daemon (API sockets, metrics, status page,
// repository) has header/read/idle deadlines, a header size cap and bounded
// connections, so slow or idle clients can neither hold file descriptors
// until the process runs out nor keep honest clients waiting
// (docs/SECURITY.md).
//
// Connections are bounded without ever blocking the accept loop: a newcomer
// is taken from the backlog at once, and when its client (one remote IP on
// TCP, one peer process by SO_PEERCRED on a unix socket) already holds
// httpMaxConnsPerClient connections, or the server holds httpMaxConns, the
// connection that has waited longest for its client to send a request
// header (half-open, slow or idle keep-alive: the server is blocked reading
// it) is closed to make room; on the global cap, one of the client holding
// the most connections. A connection whose request is being served (header
// read, handler running, event streams) is never evicted, nor one whose
// bytes the server has not read yet; when no connection may be evicted, the
// newcomer is closed instead of queued. An honest client sends its header
// right after connecting, so the server never waits on it: it is not
// evicted for a slow one, whoever opened the slow ones.
var (
	httpHeaderTimeout = 10 * time.Second // a variable: tests shorten it
	httpIdleTimeout   = time.Minute
)

const (
	httpMaxHeader = 16 << 10
	// httpMaxConns caps the open connections of one server.
	httpMaxConns = 128
	// httpMaxConnsPerClient caps the open connections of one client (remote
	// IP, or peer process on a unix socket) on one server.
	httpMaxConnsPerClient = 16
)

// newHTTPServer returns a server for h with the daemon's deadlines.
// readTimeout bounds reading one request with its body; writeTimeout
// bounds writing one response (0: unbounded, for event streams). Serve it
// on limitListener(ln): its ConnState hook tells that listener which
// connections wait for a request.
func newHTTPServer(h http.Handler, readTimeout, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeader,
		ConnState:         trackConnState,
	}
}

// limitListener bounds the connections open at once on ln (httpMaxConns,
// httpMaxConnsPerClient) by evicting waiting connections; its Accept never
// waits for a slot.
func limitListener(ln net.Listener) net.Listener {
	return newConnLimiter(ln, httpMaxConns, httpMaxConnsPerClient)
}

// Connections closed to bound the HTTP servers, process-wide, for
// lebowski_refused_total: http_evicted (a waiting connection closed for a
// newcomer), http_busy (a newcomer closed: none could be evicted).
var httpEvicted, httpBusy atomic.Uint64

// httpRefusals returns the HTTP servers' refusal counters by kind.
func httpRefusals() map[string]uint64 {
	return map[string]uint64{"http_evicted": httpEvicted.Load(), "http_busy": httpBusy.Load()}
}

// connLimiter is the listener limitListener returns.
type connLimiter struct {
	net.Listener
	max, perClient int

	mu      sync.Mutex
	conns   map[*limitedConn]struct{}
	clients map[string]int // open connections by client key
}

func newConnLimiter(ln net.Listener, max, perClient int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, perClient: perClient,
		conns: map[*limitedConn]struct{}{}, clients: map[string]int{}}
}

// limitedConn is an accepted connection; state, since and tracked are
// guarded by the limiter's mutex.
type limitedConn struct {
	net.Conn
	l      *connLimiter
	client string

	state   http.ConnState // StateNew, StateIdle: between requests
	since   time.Time      // when it entered state
	tracked bool
	// readSince is when the Read in progress started (UnixNano), 0 when
	// none is: the server is waiting for the client.
	readSince atomic.Int64

	once sync.Once
	err  error
}

// Accept returns the next connection, making room for it by closing the
// longest-waiting connection of its client or of the greediest client, or
// closes it when no connection may be evicted. It waits only for the
// underlying listener.
func (l *connLimiter) Accept() (net.Conn, error) {
	// Let the goroutine serving the connection returned last read it
	// first, so a burst of connections is not judged before the server
	// looked at any of them.
	runtime.Gosched()
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &limitedConn{Conn: nc, l: l, client: clientKey(nc), state: http.StateNew, since: time.Now()}
		victim, ok := l.admit(c)
		if !ok {
			httpBusy.Add(1)
			nc.Close()
			continue
		}
		if victim != nil {
			httpEvicted.Add(1)
		}
		return c, nil
	}
}

// admit registers c, first untracking the connection to evict for it, if
// any; ok is false when c must be closed.
func (l *connLimiter) admit(c *limitedConn) (victim *limitedConn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	full := true
	switch {
	case l.clients[c.client] >= l.perClient:
		victim = l.pick(c.client)
	case len(l.conns) >= l.max:
		victim = l.pick("")
	default:
		full = false
	}
	if full {
		if victim == nil {
			return nil, false
		}
		l.untrack(victim)
		// Closed under l.mu, as it was picked: it cannot start a request
		// in between and be cut while being served.
		victim.once.Do(func() { victim.err = victim.Conn.Close() })
	}
	c.tracked = true
	l.conns[c] = struct{}{}
	l.clients[c.client]++
	return victim, true
}

// pick returns the connection to evict: of client, or (client "") of the
// client holding the most connections; among those the one waiting the
// longest for a request header (since it was accepted or since its last
// response). Only connections the server is blocked reading between
// requests are picked: never one being served, nor one whose bytes the
// server has not read yet.
func (l *connLimiter) pick(client string) *limitedConn {
	var best *limitedConn
	var bestN int
	for c := range l.conns {
		if c.state != http.StateNew && c.state != http.StateIdle || c.readSince.Load() == 0 {
			continue
		}
		if client != "" && c.client != client {
			continue
		}
		n := l.clients[c.client]
		if best == nil || n > bestN || n == bestN && c.since.Before(best.since) {
			best, bestN = c, n
		}
	}
	return best
}

// untrack forgets c; l.mu is held.
func (l *connLimiter) untrack(c *limitedConn) {
	if !c.tracked {
		return
	}
	c.tracked = false
	delete(l.conns, c)
	if l.clients[c.client]--; l.clients[c.client] <= 0 {
		delete(l.clients, c.client)
	}
}

// Read records that the server waits for the client.
func (c *limitedConn) Read(p []byte) (int, error) {
	c.readSince.Store(time.Now().UnixNano())
	n, err := c.Conn.Read(p)
	c.readSince.Store(0)
	return n, err
}

// CloseWrite half-closes c when it can, as net/http does for a TCP
// connection before closing it after an unread request body.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close frees c's slot and closes it (once).
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.untrack(c)
	c.l.mu.Unlock()
	c.once.Do(func() { c.err = c.Conn.Close() })
	return c.err
}

// trackConnState is the servers' ConnState hook: it records which
// connections of a connLimiter wait for a request (new, idle) and which
// are being served (active, hijacked).
func trackConnState(nc net.Conn, s http.ConnState) {
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	if s == http.StateClosed {
		c.l.mu.Lock()
		c.l.untrack(c)
		c.l.mu.Unlock()
		return
	}
	c.l.mu.Lock()
	if c.tracked && c.state != s {
		c.state, c.since = s, time.Now()
	}
	c.l.mu.Unlock()
}

// clientKey names the client behind nc for the per-client cap: the remote
// IP on TCP, the peer's uid and pid (SO_PEERCRED) on a unix socket.
func clientKey(nc net.Conn) string {
	switch a := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return "ip " + ip.Unmap().String()
		}
	}
	if uc, ok := nc.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			var cred *unix.Ucred
			var cerr error
			err = raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
			if err == nil && cerr == nil {
				return "uid " + strconv.FormatUint(uint64(cred.Uid), 10) + " pid " + strconv.FormatInt(int64(cred.Pid), 10)
			}
		}
	}
	return "other"
}
