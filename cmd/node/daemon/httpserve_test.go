package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest/attesttest"
)

// These tests drive newHTTPServer, limitListener and httpHeaderTimeout;
// two of them also wait on the limiter's state (waitReading) instead of
// sleeping, so that a loaded machine cannot make them flaky.

// Slow and idle clients are cut at the header deadline, not left open, and
// an honest request is served at once while they fill the server.
func TestHTTPServerBoundsSlowClients(t *testing.T) {
	old := httpHeaderTimeout
	httpHeaderTimeout = 2 * time.Second // room for a loaded machine: the honest request must come well before it
	t.Cleanup(func() { httpHeaderTimeout = old })

	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }), time.Second, time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := limitListener(ln).(*connLimiter)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := ln.Addr().String()

	// httpMaxConns idle clients, each sending half a request line.
	var idle []net.Conn
	for range httpMaxConns {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, _ = c.Write([]byte("GET /"))
		idle = append(idle, c)
	}
	waitReading(t, l, httpMaxConnsPerClient) // the server read what they sent (all from one address: one client's cap)
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	start := time.Now()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	require.NoError(t, err, "served while the idle clients hold connections")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok", string(body))
	assert.Less(t, time.Since(start), httpHeaderTimeout/2, "served before the idle clients were cut")

	// Every idle client was closed by the server (EOF or a 408), not left open.
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(httpHeaderTimeout + 3*time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			assert.True(t, strings.Contains(line, "408") || strings.Contains(line, "400"), line)
		} else {
			var ne net.Error
			assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the server left an idle client open")
		}
	}
}

// slowClients is the number of connections the slow-client tests hold.
const slowClients = 200

// serveCounting serves srv on limitListener(ln) and returns a channel that
// receives every connection the server accepted (StateNew).
func serveCounting(t *testing.T, srv *http.Server, ln net.Listener) <-chan struct{} {
	accepted, _ := serveLimited(t, srv, ln)
	return accepted
}

// serveLimited is serveCounting that also returns the limiter.
func serveLimited(t *testing.T, srv *http.Server, ln net.Listener) (<-chan struct{}, *connLimiter) {
	accepted := make(chan struct{}, 4*slowClients)
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if hook != nil {
			hook(c, s)
		}
		if s == http.StateNew {
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}
	l := limitListener(ln).(*connLimiter)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return accepted, l
}

// waitReading waits until n of l's connections have been read by the
// server and wait for more (what makes them evictable), at most 10 s.
func waitReading(t *testing.T, l *connLimiter, n int) {
	t.Helper()
	attesttest.Eventually(t, 10*time.Second, fmt.Sprintf("%d connections read by the server", n), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		reading := 0
		for c := range l.conns {
			if c.readSince.Load() != 0 {
				reading++
			}
		}
		return reading >= n
	})
}

// holdSlowClients opens n connections with dial, each sending half a
// request line (even i) or nothing (odd i), and holds them until the test
// ends; a connection the server closes is opened again 0.2–1 s later, at
// most 5 times per client. It returns once the server accepted the n
// first connections or after 2 s (a capped server leaves the rest in its
// backlog).
func holdSlowClients(t *testing.T, n int, dial func(i int) (net.Conn, error), accepted <-chan struct{}) {
	var (
		mu   sync.Mutex
		held = make([]net.Conn, n)
		stop bool
		wg   sync.WaitGroup
	)
	t.Cleanup(func() {
		mu.Lock()
		stop = true
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
		mu.Unlock()
		wg.Wait()
	})
	open := func(i int) (net.Conn, error) {
		c, err := dial(i)
		if err != nil {
			return nil, err
		}
		if i%2 == 0 {
			_, _ = c.Write([]byte("GET /stat"))
		}
		return c, nil
	}
	for i := range n {
		c, err := open(i)
		require.NoError(t, err)
		held[i] = c
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := held[i]
			for range 5 {
				_, _ = c.Read(make([]byte, 512)) // until the server (or the test) closes it
				time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
				mu.Lock()
				if stop {
					mu.Unlock()
					return
				}
				c.Close()
				var err error
				if c, err = open(i); err != nil {
					mu.Unlock()
					return
				}
				held[i] = c
				mu.Unlock()
			}
		}()
	}
	deadline := time.After(2 * time.Second)
	for range n {
		select {
		case <-accepted:
		case <-deadline:
			t.Logf("the server accepted fewer than %d slow clients within 2 s", n)
			return
		}
	}
}

// honestRequests makes 10 requests 100 ms apart, each on a new
// connection, and asserts each is answered within 1 s; it stops after 3
// failures.
func honestRequests(t *testing.T, dial func(ctx context.Context) (net.Conn, error), url, want string) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		DisableKeepAlives: true,
	}}
	var lat []time.Duration
	failed := 0
	for i := range 10 {
		time.Sleep(100 * time.Millisecond) // spread over the slow clients' reconnections
		start := time.Now()
		resp, err := client.Get(url)
		d := time.Since(start)
		lat = append(lat, d)
		if !assert.NoError(t, err, "honest request %d", i) {
			if failed++; failed == 3 {
				break
			}
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, want, string(body))
		assert.Less(t, d, time.Second, "honest request %d", i)
	}
	slices.Sort(lat)
	t.Logf("honest latency with %d slow clients held: p50 %v, max %v (%d requests)", slowClients, lat[len(lat)/2], lat[len(lat)-1], len(lat))
}

// 200 slow clients on the API's unix socket, from the honest client's own
// process (the same peer credentials): the honest requests are served
// within 1 s, each evicting a connection that waits for its header.
func TestHTTPSlowClientsUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "lbhttp")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	// As listenAPI builds it.
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "status") }), 5*time.Minute, 0)
	accepted := serveCounting(t, srv, ln)

	holdSlowClients(t, slowClients, func(int) (net.Conn, error) { return net.Dial("unix", sock) }, accepted)
	var d net.Dialer
	honestRequests(t, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", sock) }, "http://lebowskid/v1/status", "status")
}

// 200 slow clients on a loopback TCP server built like the metrics one,
// all from the honest client's address (a local user) or spread over 20
// loopback addresses (so the server-wide cap, not the per-IP one, is
// reached): the honest requests are served within 1 s.
func TestHTTPSlowClientsTCP(t *testing.T) {
	for _, spread := range []int{1, 20} {
		t.Run(map[int]string{1: "one address", 20: "20 addresses"}[spread], func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := ln.Addr().String()
			// As metrics.listen builds it.
			mux := http.NewServeMux()
			mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "lebowski_peers 3\n") })
			srv := newHTTPServer(mux, 30*time.Second, 30*time.Second)
			accepted := serveCounting(t, srv, ln)

			holdSlowClients(t, slowClients, func(i int) (net.Conn, error) {
				src := byte(1)
				if spread > 1 {
					src = byte(2 + i%spread)
				}
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, src)}}
				return d.Dial("tcp", addr)
			}, accepted)
			var d net.Dialer
			honestRequests(t, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }, "http://"+addr+"/metrics", "lebowski_peers 3\n")
		})
	}
}

// One IP holds at most 16 connections: a newcomer evicts that IP's
// longest-waiting connection (a half-open one, never one being served),
// and is closed at once when all 16 are being served. Another IP is not
// affected.
func TestHTTPPerClientCap(t *testing.T) {
	const perClient = 16
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free)
	entered := make(chan struct{}, 2*perClient)
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		_, _ = io.WriteString(w, "done")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	srv := newHTTPServer(mux, 30*time.Second, 30*time.Second)
	closed := make(chan struct{}, 8*perClient)
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if hook != nil {
			hook(c, s)
		}
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	accepted, lim := serveLimited(t, srv, ln)

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	dial := func(src byte) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, src)}}
		c, err := d.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, c)
		return c
	}
	wait := func(ch <-chan struct{}, n int, what string) {
		t.Helper()
		deadline := time.After(2 * time.Second)
		for range n {
			select {
			case <-ch:
			case <-deadline:
				t.Fatalf("timed out waiting for %d %s", n, what)
			}
		}
	}
	blocked := func(src byte) net.Conn {
		c := dial(src)
		_, err := c.Write([]byte("GET /block HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		wait(entered, 1, "handler")
		wait(accepted, 1, "accept")
		return c
	}
	// isClosed: the server closed c within d (EOF or reset, no response).
	isClosed := func(c net.Conn, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		b, err := bufio.NewReader(c).ReadString('\n')
		var ne net.Error
		return b == "" && err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	honest := func(src byte) (string, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, src)}}
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	// The oldest connection is being served, 15 more wait for their header.
	active := blocked(1)
	var waiting []net.Conn
	for range perClient - 1 {
		c := dial(1)
		_, _ = c.Write([]byte("GET /"))
		waiting = append(waiting, c)
	}
	wait(accepted, perClient-1, "accepts")
	waitReading(t, lim, perClient-1) // the server read what they sent
	// The 17th connection of the IP is served; the oldest waiting one was
	// closed at once, the one being served and the other waiting ones were not.
	start := time.Now()
	body, err := honest(1)
	require.NoError(t, err)
	assert.Equal(t, "ok", body)
	assert.Less(t, time.Since(start), time.Second)
	assert.True(t, isClosed(waiting[0], time.Second), "the longest-waiting connection was evicted")
	for _, c := range waiting[1:] {
		assert.False(t, isClosed(c, 10*time.Millisecond), "a later waiting connection was evicted")
	}

	// When all 16 are being served, the 17th is closed at once.
	for _, c := range waiting[1:] {
		c.Close()
	}
	wait(closed, perClient, "closes") // the evicted, the honest and 14 waiting
	for range perClient - 1 {
		blocked(1)
	}
	start = time.Now()
	extra := dial(1)
	_, _ = extra.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	assert.True(t, isClosed(extra, time.Second), "the 17th connection was closed")
	assert.Less(t, time.Since(start), time.Second)
	// Another IP is served meanwhile.
	body, err = honest(2)
	require.NoError(t, err)
	assert.Equal(t, "ok", body)

	// The connections being served were not touched.
	free()
	_ = active.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(active), nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "done", string(b))
}
