package statuspage

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/core/coretest"
	"github.com/lebowski-dist/lebowski/store"
)

// statusFixture is a real in-process core node (store, fake network and
// subscriptions) with three trusted builders agreeing on hello/o3, and
// its status page on an httptest server.
type statusFixture struct {
	node   *core.Node
	net    *coretest.FakeNetwork
	s      *Server
	srv    *httptest.Server
	recipe string // the recipe ID of hello/o3
}

// hostile is markup a claim's free text or a peer could carry.
const hostile = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`

func newStatusFixture(t *testing.T, wrap func(core.API) core.API) *statusFixture {
	t.Helper()
	ctx := context.Background()
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	require.NoError(t, cfg.Validate())
	require.NoError(t, cfg.Layout().Ensure())
	st, err := store.Open(cfg.Layout().StoreDB(), core.StoreOptions(cfg)...)
	require.NoError(t, err)
	fn := &coretest.FakeNetwork{}
	fn.SetPeers([]core.PeerInfo{
		{ID: "12D3KooWPeerHighScoreAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Score: 42.5, Topics: []string{"hello/o3"}, Connected: time.Now().Add(-3 * time.Minute)},
		{ID: "12D3KooWPeerLowScoreBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", Score: -1.25, Connected: time.Now().Add(-time.Hour)},
	})
	subs := &coretest.FakeSubscriber{}
	require.NoError(t, subs.Subscribe(ctx, vocab.Ref{Package: "hello", Opinion: "o3"}, true))
	require.NoError(t, subs.Subscribe(ctx, vocab.Ref{Package: "nano"}, true))
	n := core.New(st, core.WithIdentity(attesttest.Fresh(t, 1)[0]), core.WithConfig(cfg), core.WithNetwork(fn),
		core.WithSubscriber(subs), core.WithVersion("status-test"))
	for _, id := range attesttest.Identities(t, 3) {
		res, err := n.ImportClaims(ctx, [][]byte{attesttest.Wire(t, attesttest.Claim(t, id))})
		require.NoError(t, err)
		require.Equal(t, "new", res[0].Status, res[0].Error)
		require.NoError(t, n.SetTrust(ctx, id.Fingerprint(), attest.TrustTrusted, "status test"))
	}
	var api core.API = n
	if wrap != nil {
		api = wrap(n)
	}
	sctx, cancel := context.WithCancel(ctx)
	s := New(api, Options{Addr: cfg.StatusAddr, Threshold: cfg.Threshold, MinTrusted: cfg.MinTrusted}, slog.New(slog.DiscardHandler))
	require.NoError(t, s.Start(sctx))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		cancel() // ends the event streams, so the server can close
		n.Close()
		srv.Close()
		st.Close()
	})
	info, err := n.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
	require.NoError(t, err)
	return &statusFixture{node: n, net: fn, s: s, srv: srv, recipe: info.Recipes[0].Recipe.RecipeID}
}

// redFlag signs a red flag about hello/o3 whose reason is hostile markup.
func (f *statusFixture) redFlag(t *testing.T) string {
	t.Helper()
	rr, err := f.node.ReportMismatch(context.Background(), core.Mismatch{RecipeID: f.recipe, File: attesttest.DebName,
		Observed: attesttest.Hex("tampered"), Expected: attesttest.Hex("deb"), Reason: "verify: " + hostile})
	require.NoError(t, err)
	return rr.ID
}

// importClaim imports a claim of a new (unvetted) key about hello/o3.
func (f *statusFixture) importClaim(t *testing.T) string {
	t.Helper()
	c := attesttest.Claim(t, attesttest.Fresh(t, 1)[0])
	res, err := f.node.ImportClaims(context.Background(), [][]byte{attesttest.Wire(t, c)})
	require.NoError(t, err)
	require.Equal(t, "new", res[0].Status, res[0].Error)
	return c.ID
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// hostileAPI is a node whose peers and subscriptions carry markup.
type hostileAPI struct{ core.API }

func (h hostileAPI) Peers(ctx context.Context) ([]core.PeerInfo, error) {
	return []core.PeerInfo{{ID: hostile, Score: 1, Topics: []string{hostile}}}, nil
}

func (h hostileAPI) Status(ctx context.Context) (*core.Status, error) {
	st, err := h.API.Status(ctx)
	if err != nil {
		return nil, err
	}
	st.Version = "</title>" + hostile
	st.Subscriptions = append(st.Subscriptions, hostile)
	st.RunningBuilds = append(st.RunningBuilds, "hello/"+hostile)
	return st, nil
}

// buildsAPI is a node with a rebuild running here (nano/vanilla, whose
// log carries markup) and the intents of two other builders: one for
// hello/o3, a recipe the page knows, one for a recipe it does not.
type buildsAPI struct {
	core.API
	mu      sync.Mutex
	builds  []core.RunningBuild
	intents []core.BuildIntent
}

const intentBuilder = "0123456789ABCDEF0123456789ABCDEF01234567"

var (
	helloKey   = attest.RecipeKey("hello", attesttest.OpinionCID)
	unknownKey = attest.RecipeKey("zlib", vocab.CID([]byte("an opinion this node never saw")))
	runLog     = []string{"dpkg-buildpackage: info: source package nano", hostile, "make[1]: Leaving directory '/build/nano'"}
)

func newBuildsAPI(a core.API) *buildsAPI {
	now := time.Now()
	return &buildsAPI{API: a,
		builds: []core.RunningBuild{{Recipe: attest.RecipeKey("nano", ""), Package: "nano", Opinion: vocab.Vanilla,
			Started: now.Add(-3 * time.Minute), Reason: "subscribed", LogTail: append([]string{}, runLog...)}},
		intents: []core.BuildIntent{
			{Recipe: helloKey, Builder: intentBuilder, Started: now.Add(-2 * time.Minute), Expires: now.Add(10*time.Minute + 30*time.Second), Expect: 300},
			{Recipe: unknownKey, Builder: intentBuilder, Started: now.Add(-time.Minute), Expires: now.Add(5*time.Minute + 30*time.Second)},
		}}
}

func (b *buildsAPI) Status(ctx context.Context) (*core.Status, error) {
	st, err := b.API.Status(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st.QueuedBuilds = 2
	for _, r := range b.builds {
		r.LogTail = append([]string{}, r.LogTail...)
		st.Builds = append(st.Builds, r)
		st.RunningBuilds = append(st.RunningBuilds, r.Recipe)
	}
	st.Intents = append(st.Intents, b.intents...)
	return st, nil
}

// logLine adds a line to the running build's log.
func (b *buildsAPI) logLine(l string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.builds[0].LogTail = append(b.builds[0].LogTail, l)
}

// finish ends the running build.
func (b *buildsAPI) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.builds = nil
}

// TestStatusRunningBuildsAndIntents: the running build with its log tail
// (the hostile line as text, most recent line last) and the intents of
// others, on the page, in /status.json and in /builds.json.
func TestStatusRunningBuildsAndIntents(t *testing.T) {
	var fake *buildsAPI
	f := newStatusFixture(t, func(a core.API) core.API { fake = newBuildsAPI(a); return fake })
	resp, body := get(t, f.srv.URL+"/")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, 1, strings.Count(body, "<script"), "only the page's own script")
	assert.NotContains(t, body, "<img")
	for _, want := range []string{
		"2 queued, 1 running",
		`<li data-key="nano/vanilla"><div class="row"><strong title="nano/vanilla">nano/vanilla</strong><span class="muted since">started 3m ago · subscribed</span></div>`,
		"<pre class=\"tail\">dpkg-buildpackage: info: source package nano\n" +
			"&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;\n" +
			"make[1]: Leaving directory &#39;/build/nano&#39;</pre>",
		"Being built elsewhere",
		`<strong title="` + helloKey + `">hello/o3</strong>`, // the key of a recipe the page shows
		`<strong title="` + unknownKey + `">` + shortKey(unknownKey) + `</strong>`,
		`<code title="` + intentBuilder + `">0123456789ABCDEF…</code>`,
		"<td>2m ago</td><td>~5m</td><td>in 10m</td>",
		"<td>1m ago</td><td>unknown</td><td>in 5m</td>",
	} {
		assert.Contains(t, body, want)
	}
	assert.True(t, strings.HasPrefix(shortKey(unknownKey), "zlib/"), shortKey(unknownKey))
	assert.NotContains(t, body, `id="no-running" class="muted">`, "the running build hides the placeholder")

	resp, js := get(t, f.srv.URL+"/status.json")
	require.Equal(t, http.StatusOK, resp.StatusCode, js)
	assert.NotContains(t, js, "<script", "JSON escapes markup too")
	var p statusPage
	require.NoError(t, json.Unmarshal([]byte(js), &p))
	require.Len(t, p.Node.Builds, 1)
	require.Len(t, p.Node.Intents, 2)
	assert.Equal(t, helloKey, p.Recipes[0].Key, "a recipe names its key")
	assert.Equal(t, 2, p.Builds.Queued)
	require.Len(t, p.Builds.Running, 1)
	r := p.Builds.Running[0]
	assert.Equal(t, "nano/vanilla", r.Key)
	assert.Equal(t, "nano/vanilla", r.Label)
	assert.Equal(t, "nano", r.Package)
	assert.Equal(t, "subscribed", r.Reason)
	assert.Equal(t, runLog, r.LogTail)
	assert.False(t, r.Since.IsZero())
	require.Len(t, p.Builds.Elsewhere, 2)
	in := p.Builds.Elsewhere[0]
	assert.Equal(t, helloKey, in.Key)
	assert.Equal(t, "hello/o3", in.Ref)
	assert.Equal(t, "hello/o3", in.Label)
	assert.Equal(t, intentBuilder, in.Builder)
	assert.Equal(t, int64(300), in.Expect)
	assert.Empty(t, p.Builds.Elsewhere[1].Ref, "a key the page never saw")
	assert.Equal(t, shortKey(unknownKey), p.Builds.Elsewhere[1].Label)

	// /builds.json: the same rebuilds, the log as it grows.
	fake.logLine("dh_auto_test: " + hostile)
	resp, js = get(t, f.srv.URL+"/builds.json")
	require.Equal(t, http.StatusOK, resp.StatusCode, js)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.NotContains(t, js, "<script")
	var b statusBuildsNow
	require.NoError(t, json.Unmarshal([]byte(js), &b))
	assert.WithinDuration(t, time.Now(), b.Generated, time.Minute)
	require.Len(t, b.Running, 1)
	assert.Equal(t, append(append([]string{}, runLog...), "dh_auto_test: "+hostile), b.Running[0].LogTail, "most recent line last")
	require.Len(t, b.Elsewhere, 2)
	assert.Equal(t, "hello/o3", b.Elsewhere[0].Ref, "remembered from the page's recipes")
	assert.Equal(t, 2, b.Queued)
	assert.NotNil(t, b.Finished)
}

func TestStatusBoundsLogTail(t *testing.T) {
	var long []string
	for i := range core.MaxLogTail + 5 {
		long = append(long, fmt.Sprintf("line %d %s", i, strings.Repeat("x", core.MaxLogLine)))
	}
	long = append(long, "bad \xff utf-8")
	got := boundTail(long)
	require.Len(t, got, core.MaxLogTail)
	assert.Equal(t, "bad \uFFFD utf-8", got[len(got)-1])
	assert.Equal(t, core.MaxLogLine+1, len([]rune(got[0])), "cut to MaxLogLine characters and …")
	assert.Equal(t, "\n\nfirst line empty", logLines([]string{"", "first line empty"}))
	now := time.Now()
	assert.Equal(t, "in 10m", untilText(now, now.Add(10*time.Minute+time.Second)))
	assert.Equal(t, "expired", untilText(now, now.Add(-time.Second)))
	assert.Equal(t, "~2h", expectText(2*3600+60))
	assert.Equal(t, "unknown", expectText(0))
}

func TestStatusPageRenders(t *testing.T) {
	f := newStatusFixture(t, nil)
	resp, body := get(t, f.srv.URL+"/")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	csp := resp.Header.Get("Content-Security-Policy")
	nonce := regexp.MustCompile(`script-src 'nonce-([^']+)'`).FindStringSubmatch(csp)
	require.Len(t, nonce, 2, "CSP %q allows scripts by nonce only", csp)
	assert.NotContains(t, csp, "unsafe-inline")
	assert.Contains(t, body, `<script nonce="`+nonce[1]+`">`)
	for _, want := range []string{
		`<section id="recipes"`, `data-ref="hello/o3"`, "SAFE TO INSTALL", "3 agree of 2 needed", "status-test",
		"12D3KooWPeerHighScor", "42.5", "-1.2", // peers and scores
		"<code>hello/o3</code>", "<code>nano/vanilla</code>", // subscriptions
		"no claims yet", // nano: subscribed, nothing known
		"0 queued, 0 running",
	} {
		assert.Contains(t, body, want)
	}
	assert.Less(t, strings.Index(body, "12D3KooWPeerHighScor"), strings.Index(body, "12D3KooWPeerLowScore"), "peers by score")
	assert.Equal(t, 3, strings.Count(body, `<span class="badge safe">trusted</span>`), "the three trusted builders")

	// Unknown paths and methods.
	resp, _ = get(t, f.srv.URL+"/nope")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, err := http.Post(f.srv.URL+"/", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestStatusEscapesHostileStrings(t *testing.T) {
	f := newStatusFixture(t, func(a core.API) core.API { return hostileAPI{a} })
	f.redFlag(t)
	attesttest.Eventually(t, 5*time.Second, "the red flag's event", func() bool {
		evs, _ := f.s.recentEvents()
		return len(evs) > 0 && evs[0].Result == string(attest.ResultMismatch)
	})
	_, body := get(t, f.srv.URL+"/")
	assert.Equal(t, 1, strings.Count(body, "<script"), "only the page's own script")
	assert.NotContains(t, body, "<img")
	assert.NotContains(t, body, "</title><")
	assert.Contains(t, body, "verify: &lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;", "the red flag's reason, as text")
	assert.Contains(t, body, "RED FLAG")
	assert.Contains(t, body, `<span class="badge bad">1 red flag</span>`)

	resp, js := get(t, f.srv.URL+"/status.json")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotContains(t, js, "<script", "JSON escapes markup too")
	var p statusPage
	require.NoError(t, json.Unmarshal([]byte(js), &p))
	require.Len(t, p.RedFlags, 1)
	assert.Equal(t, "verify: "+hostile, p.RedFlags[0].Reason)
	assert.Equal(t, hostile, p.Peers[0].ID)
}

func TestStatusJSON(t *testing.T) {
	f := newStatusFixture(t, nil)
	id := f.importClaim(t)
	attesttest.Eventually(t, 5*time.Second, "the import's event", func() bool {
		evs, _ := f.s.recentEvents()
		return len(evs) > 0 && evs[0].ClaimID == id
	})
	resp, body := get(t, f.srv.URL+"/status.json")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var p statusPage
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	assert.Equal(t, "status-test", p.Node.Version)
	assert.Equal(t, []string{"hello/o3", "nano/vanilla"}, p.Subscriptions)
	assert.Equal(t, statusPolicy{Threshold: consensus.DefaultThreshold, MinTrusted: consensus.DefaultMinTrusted}, p.Policy)
	require.Len(t, p.Recipes, 2)
	r := p.Recipes[0]
	assert.Equal(t, "hello/o3", r.Ref)
	assert.True(t, r.Subscribed)
	assert.Equal(t, consensus.Safe, r.Verdict)
	assert.Equal(t, 3, r.Agree)
	assert.Equal(t, 3, r.Trusted)
	assert.Equal(t, 1, r.Unvetted, "the imported claim of a new key")
	assert.Equal(t, f.recipe, r.RecipeID)
	assert.Contains(t, r.Bar, "/10")
	assert.Equal(t, "nano/vanilla", p.Recipes[1].Ref)
	assert.Equal(t, consensus.Unverified, p.Recipes[1].Verdict)
	assert.Contains(t, p.Recipes[1].Note, "no claims yet")
	require.Len(t, p.Peers, 2)
	assert.Equal(t, 42.5, p.Peers[0].Score)
	assert.Len(t, p.Keys, 3)
	require.NotEmpty(t, p.Events)
	ev := p.Events[0]
	assert.Equal(t, id, ev.ClaimID)
	assert.Equal(t, core.EventClaim, ev.Type)
	assert.Equal(t, "hello", ev.Package, "an import's event is described from its claim")
	assert.Equal(t, "o3", ev.Opinion)
	assert.Equal(t, "success", ev.Result)
	assert.Contains(t, ev.Text, "hello/o3 success")
	assert.Contains(t, ev.Text, "imported")
	assert.Equal(t, ev.Seq, p.LastSeq)
	assert.Empty(t, p.Problems)
}

// sseClient reads one /events stream.
type sseClient struct {
	comments int // comment lines (keep-alives) read
	resp     *http.Response
	lines    *bufio.Scanner
	cancel   context.CancelFunc
}

func openEvents(t *testing.T, url string, hdr http.Header) *sseClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	c := &sseClient{resp: resp, lines: bufio.NewScanner(resp.Body), cancel: cancel}
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() { c.cancel(); c.resp.Body.Close() }

// next returns the next event's id and data.
func (c *sseClient) next(t *testing.T) (id string, ev statusEvent) {
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

func TestStatusEventsStream(t *testing.T) {
	f := newStatusFixture(t, nil)
	c := openEvents(t, f.srv.URL+"/events", nil)
	require.Equal(t, http.StatusOK, c.resp.StatusCode)
	assert.Equal(t, "text/event-stream", c.resp.Header.Get("Content-Type"))
	require.True(t, c.lines.Scan())
	assert.Equal(t, "retry: 3000", c.lines.Text(), "the stream opens with the reconnection delay")

	start := time.Now()
	id := f.importClaim(t)
	seq, ev := c.next(t)
	t.Logf("event delivered %s after the import", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, id, ev.ClaimID)
	assert.Equal(t, fmt.Sprint(ev.Seq), seq)
	assert.Contains(t, ev.Text, "hello/o3")
	assert.NotEmpty(t, ev.Clock)

	flag := f.redFlag(t)
	_, ev = c.next(t)
	assert.Equal(t, flag, ev.ClaimID)
	assert.Equal(t, "mismatch", ev.Result)
	assert.True(t, strings.HasPrefix(ev.Text, "RED FLAG "), ev.Text)

	// A browser reconnecting with Last-Event-ID (or the page's ?after=)
	// gets what it missed from the ring.
	c2 := openEvents(t, f.srv.URL+"/events", http.Header{"Last-Event-ID": {seq}})
	_, ev = c2.next(t)
	assert.Equal(t, flag, ev.ClaimID, "only the events after Last-Event-ID")
	c3 := openEvents(t, f.srv.URL+"/events?after=0", nil)
	_, ev = c3.next(t)
	assert.Equal(t, id, ev.ClaimID)
}

func TestStatusEventsStreamCap(t *testing.T) {
	f := newStatusFixture(t, nil)
	for i := 0; i < statusMaxStreams; i++ {
		c := openEvents(t, f.srv.URL+"/events", nil)
		require.Equal(t, http.StatusOK, c.resp.StatusCode, "stream %d", i)
		require.True(t, c.lines.Scan(), "stream %d opened", i)
	}
	resp, body := get(t, f.srv.URL+"/events")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, body, "live event streams are open already")
	resp, _ = get(t, f.srv.URL+"/status.json")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the page still answers")
}

func TestStatusRefusesForeignHosts(t *testing.T) {
	f := newStatusFixture(t, nil)
	for host, want := range map[string]int{
		"evil.example":                           http.StatusMisdirectedRequest,
		"evil.example:80":                        http.StatusMisdirectedRequest,
		"localhost":                              http.StatusOK,
		"localhost:9466":                         http.StatusOK,
		"127.0.0.1:9466":                         http.StatusOK,
		"[::1]:9466":                             http.StatusOK,
		strings.TrimPrefix(f.srv.URL, "http://"): http.StatusOK,
	} {
		req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/status.json", nil)
		require.NoError(t, err)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, "Host %s: %s", host, b)
		if want != http.StatusOK {
			assert.Contains(t, string(b), "open it by IP address")
		}
	}
}

// chromium finds a Chromium for the browser test: it fails naming
// .ci/install-deps when there is none, unless LEBOWSKI_NO_BROWSER=1.
func chromium(t *testing.T) string {
	t.Helper()
	if os.Getenv("LEBOWSKI_NO_BROWSER") == "1" {
		t.Skip("LEBOWSKI_NO_BROWSER=1: not testing the status page in a browser")
	}
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("no Chromium to test the status page in (looked for %s in PATH): run .ci/install-deps (it installs Debian's chromium), or set LEBOWSKI_NO_BROWSER=1 to skip this test", strings.Join(names, ", "))
	return ""
}

// TestStatusPageInBrowser loads the page in headless Chromium, checks
// what it shows, then imports a claim and a red flag and sees both appear
// without a reload, and a running build's log grow and the build finish;
// no console error or exception is allowed, and the hostile red-flag
// reason and log line must stay text. The screenshot goes to
// $LEBOWSKI_STATUS_SCREENSHOT (a phone-sized one beside it) when set.
func TestStatusPageInBrowser(t *testing.T) {
	exe := chromium(t)
	defer func(d time.Duration) { statusPollEvery = d }(statusPollEvery)
	statusPollEvery = 500 * time.Millisecond
	var fake *buildsAPI
	f := newStatusFixture(t, func(a core.API) core.API { fake = newBuildsAPI(a); return fake })
	f.redFlag(t) // a hostile reason, before the page loads

	var out syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Chromium's output:\n%s", out.String())
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000), chromedp.CombinedOutput(&out))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(ctx, steps...), what)
	}
	eval := func(expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		require.NoError(t, err, expr)
		return v
	}
	// The first action starts the browser, which lives as long as the
	// context of that action: bctx itself, bounded by a timer.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(bctx) }()
	select {
	case err := <-started:
		require.NoError(t, err, "start Chromium (%s)", exe)
	case <-time.After(30 * time.Second):
		cancelBrowser()
		t.Fatalf("Chromium (%s) did not start within 30s", exe)
	}

	// Every console message, from before the navigation on.
	var (
		mu       sync.Mutex
		messages []chromedp.ConsoleMessage
	)
	cctx, stopConsole := context.WithCancel(bctx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range chromedp.Console(cctx) {
			if err != nil {
				return
			}
			mu.Lock()
			messages = append(messages, m)
			mu.Unlock()
		}
	}()

	step("load the page", chromedp.Navigate(f.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#recipes")),
		chromedp.WaitReady(chromedp.CSS("body[data-live=open]")))
	text := eval(`document.body.innerText`)
	for _, want := range []string{"hello/o3", "SAFE TO INSTALL", "3 agree of 2 needed", "12D3KooWPeerHighScor", "42.5",
		"Red flags", "verify: " + hostile, "RED FLAG", "nano", "no claims yet"} {
		assert.Contains(t, text, want)
	}
	assert.Contains(t, eval(`getComputedStyle(document.querySelector(".live"), "::after").content`), "live", "the page says it is live")
	assert.Equal(t, "undefined", eval(`typeof window.__pwned`), "the hostile reason did not run")
	eval(`window.__sameDocument = "yes"`)

	// The running build's log tail, most recent line last, and the
	// intents of others.
	tail := `document.querySelector('#running li[data-key="nano/vanilla"] pre.tail').innerText`
	assert.Equal(t, strings.Join(runLog, "\n"), strings.TrimRight(eval(tail), "\n"))
	assert.Equal(t, "true", eval(`String(document.querySelector('#running pre.tail').getBoundingClientRect().height > 0)`), "the tail is visible")
	assert.Contains(t, text, "started 3m ago · subscribed")
	assert.Contains(t, text, "Being built elsewhere")
	assert.Equal(t, "2", eval(`String(document.querySelectorAll('#intents tbody tr').length)`))
	assert.Contains(t, eval(`document.querySelector('#intents').innerText`), "hello/o3")
	assert.Equal(t, intentBuilder, eval(`document.querySelector('#intents tbody code').title`))

	// The log grows: the page reads /builds.json again.
	fake.logLine("dh_auto_test: " + hostile)
	step("the new log line appears", chromedp.Poll[chromedp.Void](
		tail+`.trimEnd().endsWith("dh_auto_test: " + `+fmt.Sprintf("%q", hostile)+`)`,
		chromedp.WithPollingTimeout(5*time.Second)))
	assert.Equal(t, "2 queued, 1 running", eval(`document.getElementById("builds-count").textContent`))

	// New events appear without a reload.
	start := time.Now()
	id := f.importClaim(t)
	step("the imported claim appears", chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`document.querySelector('#event-list li[data-claim=%q]') !== null`, id),
		chromedp.WithPollingTimeout(5*time.Second)))
	t.Logf("the imported claim showed in the page %s after the import", time.Since(start).Round(time.Millisecond))
	line := eval(fmt.Sprintf(`document.querySelector('#event-list li[data-claim=%q]').innerText`, id))
	assert.Contains(t, line, "hello/o3 success")
	assert.Contains(t, line, "imported")
	flag := f.redFlag(t)
	step("the red flag appears", chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`document.querySelector('#event-list li.mismatch[data-claim=%q]') !== null`, flag),
		chromedp.WithPollingTimeout(5*time.Second)))
	assert.Equal(t, "yes", eval(`window.__sameDocument`), "no reload")
	assert.Equal(t, flag, eval(`document.querySelector('#event-list li').dataset.claim`), "newest first")
	assert.Equal(t, "undefined", eval(`typeof window.__pwned`))

	shot := os.Getenv("LEBOWSKI_STATUS_SCREENSHOT")
	if shot == "" {
		shot = t.TempDir() + "/status.png"
	}
	shoot := func(path string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("screenshot: %s", path)
	}
	shoot(shot)
	step("phone-sized viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	assert.Equal(t, "false", eval(`String(document.documentElement.scrollWidth > window.innerWidth)`), "no sideways scrolling on a phone")
	shoot(strings.TrimSuffix(shot, ".png") + "-phone.png")

	// The build finishes: it leaves the running list, its event joins the
	// finished ones.
	fake.finish()
	f.node.Emit(core.Event{Type: core.EventBuildFinished, Package: "nano", Opinion: vocab.Vanilla, Data: json.RawMessage(`{"status":"success"}`)})
	step("the finished build leaves the running list", chromedp.Poll[chromedp.Void](
		`document.querySelectorAll('#running li').length === 0 && !document.getElementById("no-running").hidden`,
		chromedp.WithPollingTimeout(5*time.Second)))
	assert.Contains(t, eval(`document.querySelector('#finished details summary').innerText`), "rebuild finished: nano/vanilla success")
	assert.Equal(t, "2 queued, 0 running", eval(`document.getElementById("builds-count").textContent`))
	assert.Equal(t, "undefined", eval(`typeof window.__pwned`))

	stopConsole()
	<-consoleDone
	mu.Lock()
	defer mu.Unlock()
	for _, m := range messages {
		if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.IsException() {
			t.Errorf("console %s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line)
		}
	}
}

// syncBuffer is a bytes.Buffer for writers on several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestStatusNonceNeedsNoEscaping: the CSP nonce appears in the page byte
// for byte (a standard-base64 '+', in about a third of the nonces, became &#43;).
func TestStatusNonceNeedsNoEscaping(t *testing.T) {
	for range 200 {
		n, err := newNonce()
		require.NoError(t, err)
		require.Regexp(t, `^[A-Za-z0-9_-]{24}$`, n)
	}
}
