package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/cmd/internal/statuspage"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/coretest"
	"github.com/lebowski-dist/lebowski/store"
)

// The status page's own tests are in package statuspage; these serve it
// the way the daemon does: with its HTTP server, or from a running daemon.

// statusJSON is what these tests read of the page's /status.json.
type statusJSON struct {
	Node          *core.Status `json:"node"`
	Subscriptions []string     `json:"subscriptions"`
	Builds        struct {
		Finished []statusEventJSON `json:"finished"`
	} `json:"builds"`
	Events []statusEventJSON `json:"events"`
}

// statusEventJSON is one event of the page's JSON and of its /events stream.
type statusEventJSON struct {
	core.Event
	Text    string `json:"text"`
	LogTail string `json:"log_tail,omitempty"`
}

// newStatusPage is a real in-process core node (store, fake network) and
// its status page with opts, following the node's events.
func newStatusPage(t *testing.T, opts statuspage.Options) (*core.Node, *statuspage.Server) {
	t.Helper()
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	require.NoError(t, cfg.Validate())
	require.NoError(t, cfg.Layout().Ensure())
	st, err := store.Open(cfg.Layout().StoreDB(), core.StoreOptions(cfg)...)
	require.NoError(t, err)
	n := core.New(st, core.WithIdentity(attesttest.Fresh(t, 1)[0]), core.WithConfig(cfg), core.WithNetwork(&coretest.FakeNetwork{}),
		core.WithVersion("status-test"))
	ctx, cancel := context.WithCancel(context.Background())
	s := statuspage.New(n, opts, slog.New(slog.DiscardHandler))
	require.NoError(t, s.Start(ctx))
	t.Cleanup(func() {
		cancel() // ends the event streams
		n.Close()
		st.Close()
	})
	return n, s
}

// importStatusClaim imports a claim of a new (unvetted) key about hello/o3.
func importStatusClaim(t *testing.T, n *core.Node) string {
	t.Helper()
	c := attesttest.Claim(t, attesttest.Fresh(t, 1)[0])
	res, err := n.ImportClaims(context.Background(), [][]byte{attesttest.Wire(t, c)})
	require.NoError(t, err)
	require.Equal(t, "new", res[0].Status, res[0].Error)
	return c.ID
}

func getStatus(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// sseClient reads one /events stream.
type sseClient struct {
	comments int // comment lines (keep-alives) read
	resp     *http.Response
	lines    *bufio.Scanner
	cancel   context.CancelFunc
}

func openEvents(t *testing.T, url string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	c := &sseClient{resp: resp, lines: bufio.NewScanner(resp.Body), cancel: cancel}
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() { c.cancel(); c.resp.Body.Close() }

// next returns the next event's id and data.
func (c *sseClient) next(t *testing.T) (id string, ev statusEventJSON) {
	t.Helper()
	for c.lines.Scan() {
		l := c.lines.Text()
		switch {
		case strings.HasPrefix(l, ":"):
			c.comments++
		case strings.HasPrefix(l, "id: "):
			id = strings.TrimPrefix(l, "id: ")
		case strings.HasPrefix(l, "data: "):
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &ev))
			return id, ev
		}
	}
	t.Fatalf("the event stream ended: %v", c.lines.Err())
	return "", ev
}

// TestStatusEventsOutliveReadTimeout: a stream lasts past the server's
// read timeout (net/http clears the read deadline once the request is
// read) and sends keep-alives while quiet.
func TestStatusEventsOutliveReadTimeout(t *testing.T) {
	n, s := newStatusPage(t, statuspage.Options{Heartbeat: 100 * time.Millisecond})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = newHTTPServer(s.Handler(), 300*time.Millisecond, 0)
	srv.Start()
	defer srv.Close()
	c := openEvents(t, srv.URL+"/events")
	defer c.close()
	require.True(t, c.lines.Scan())
	time.Sleep(time.Second)
	id := importStatusClaim(t, n)
	_, ev := c.next(t)
	assert.Equal(t, id, ev.ClaimID, "the stream still delivers after 3 read timeouts")
	assert.Positive(t, c.comments, "keep-alives while quiet")
}

// TestStatusDaemonServes: a daemon with status_addr serves the page; its
// fake rebuild shows as events, the finished one with its log's tail.
func TestStatusDaemonServes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	td := startOne(t, func(c *config.Config) { c.StatusAddr = addr })
	var p statusJSON
	attesttest.Eventually(t, 30*time.Second, "the daemon's rebuild in /status.json", func() bool {
		_, body := getStatus(t, "http://"+addr+"/status.json")
		p = statusJSON{}
		return json.Unmarshal([]byte(body), &p) == nil && len(p.Builds.Finished) == 1
	})
	assert.NotEmpty(t, p.Node.PeerID)
	assert.Equal(t, []string{"hello/o3"}, p.Subscriptions)
	fin := p.Builds.Finished[0]
	assert.Equal(t, "fake build log", fin.LogTail)
	assert.Contains(t, fin.Text, "rebuild finished: hello/o3 success")
	var types []string
	for _, ev := range p.Events {
		types = append(types, ev.Type)
	}
	assert.Contains(t, types, core.EventBuildStarted)
	assert.Contains(t, types, core.EventClaim)
	resp, body := getStatus(t, "http://"+addr+"/")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "fake build log")
	assert.Equal(t, int32(1), td.fb.Builds.Load())

	// An open event stream does not hold the daemon up: it ends when the
	// daemon stops.
	c := openEvents(t, "http://"+addr+"/events?after=0")
	_, ev := c.next(t)
	assert.NotEmpty(t, ev.Type, "the ring's events first")
	start := time.Now()
	td.cancel()
	select {
	case err = <-td.done:
		td.done <- err // for startOne's cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon did not stop within 20s with an event stream open")
	}
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 9*time.Second, "the stream did not wait for the 10 s shutdown deadline")
	for c.lines.Scan() {
	}
	t.Logf("daemon stopped in %s with a stream open", time.Since(start).Round(time.Millisecond))
}
