package daemon

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Slow and idle clients are cut at the header deadline, a client past the
// connection cap waits instead of costing a file descriptor, and honest
// requests are served once the cap frees.
func TestHTTPServerBoundsSlowClients(t *testing.T) {
	old := httpHeaderTimeout
	httpHeaderTimeout = 300 * time.Millisecond
	t.Cleanup(func() { httpHeaderTimeout = old })

	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }), time.Second, time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(limitListener(ln)) }()
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
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	start := time.Now()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	require.NoError(t, err, "served after the idle clients were cut")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok", string(body))
	assert.Less(t, time.Since(start), 3*time.Second)

	// Every idle client was closed by the server (EOF or a 408), not left open.
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			assert.True(t, strings.Contains(line, "408") || strings.Contains(line, "400"), line)
		} else {
			var ne net.Error
			assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the server left an idle client open")
		}
	}
}
