// Package statuspage is the node's web status page (the daemon's opt-in
// status_addr): one server-rendered HTML page, its JSON twin /status.json
// and a Server-Sent Events stream /events that the page's few lines of
// script append to its list of recent events. On every rebuild event and
// every few seconds (statusPollEvery while rebuilds run here or elsewhere,
// statusIdlePollEvery otherwise) the script also reads /builds.json (the
// rebuilds part only: one Status call) to refresh the running builds' log
// tails and the intents of others. Everything it shows comes from
// core.API; it changes nothing.
//
// New returns the page of an API, Start follows the API's event stream and
// Handler serves the page; the daemon listens on status_addr and serves
// Handler with its HTTP limits.
//
// Bounds: the daemon's HTTP server (its newHTTPServer, limitListener) caps
// connections, headers and idle time; statusMaxStreams event streams at
// once, each closed after statusStreamMax or statusStreamEvents events
// (the browser reconnects and misses nothing the ring still holds); a
// stream whose reader is slow misses events rather than slowing the node;
// statusMaxRenders pages are computed at once; every list is capped.
package statuspage

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/internal/human"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// defaultHeartbeat is how often a quiet stream sends a comment line, which
// finds dead connections (Options.Heartbeat: tests shorten it).
const defaultHeartbeat = 20 * time.Second

// statusPollEvery is how often the page reads /builds.json while rebuilds
// run here or elsewhere, statusIdlePollEvery while none does (other
// builders' intents arrive without an event). Variables: tests shorten them.
var (
	statusPollEvery     = 5 * time.Second
	statusIdlePollEvery = 30 * time.Second
)

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"short": short,
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("15:04:05")
	},
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"ago":     func(t time.Time) string { return agoText(time.Now(), t) },
	"until":   func(t time.Time) string { return untilText(time.Now(), t) },
	"expect":  expectText,
	"lines":   logLines,
	"score":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"atLeast": func(a, b int) int { return max(a, b, 1) },
	"verdictClass": func(v consensus.Verdict) string {
		switch v {
		case consensus.Safe:
			return "safe"
		case consensus.DoNotInstall:
			return "bad"
		}
		return "unverified"
	},
}).Parse(statusHTML))

const (
	statusRecent       = 100              // events the ring keeps (and the page lists)
	statusMaxRecipes   = 50               // recipes evaluated for one page
	statusMaxRows      = 100              // peers, keys, red flags listed
	statusMaxStreams   = 32               // /events streams at once
	statusStreamMax    = 30 * time.Minute // one stream's lifetime; EventSource reconnects
	statusStreamEvents = 10000            // events one stream sends before it is closed
	statusStreamBuffer = 64               // events queued for one stream; more are missed
	statusWriteTimeout = 10 * time.Second // one write to a stream
	statusMaxRenders   = 4                // pages computed at once
	statusRenderTime   = 20 * time.Second // one page, all its API calls
	statusLogTail      = 20               // lines of a finished build's log
	statusLogTailBytes = 4 << 10          // bytes of a finished build's log
	statusMaxLog       = 64 << 20         // logs larger than this are not read for a tail
	statusMaxFinished  = 5                // finished rebuilds listed
	statusMaxRefs      = 1000             // recipe keys remembered with their package/opinion
)

// statusEvent is one core.Event as the page shows it: the claim it names
// looked up (package, opinion, result, builder), and a line of text.
type statusEvent struct {
	Seq uint64 `json:"seq"`
	core.Event
	Result  string `json:"result,omitempty"`  // the claim's result (success, failed, unreproducible, mismatch)
	Builder string `json:"builder,omitempty"` // the claim's signer
	Text    string `json:"text"`              // one line a person reads
	LogTail string `json:"log_tail,omitempty"`
	Clock   string `json:"clock"` // Time as HH:MM:SS UTC
}

// Options are what the page takes from the node's configuration.
type Options struct {
	// Addr is the address the page is served on (status_addr): its host
	// name is accepted in Host headers, besides IP addresses, localhost
	// and the machine's host name.
	Addr string
	// Threshold and MinTrusted are the trust policy the page's verdicts
	// use (threshold, min_trusted); 0 means consensus.DefaultThreshold,
	// 0 or less consensus.DefaultMinTrusted.
	Threshold  float64
	MinTrusted int
	// Heartbeat is how often a quiet event stream sends a comment line,
	// which finds dead connections; 0 means 20 seconds.
	Heartbeat time.Duration
}

// Server serves the status page over an API.
type Server struct {
	api       core.API
	log       *slog.Logger
	policy    consensus.Options // Threshold and MinTrusted
	hosts     map[string]bool   // Host names accepted besides IPs and localhost
	heartbeat time.Duration
	lookups   *rate.Limiter // claim look-ups that describe events
	renders   chan struct{}
	streams   chan struct{}
	done      chan struct{} // closed when the event stream of the API ends

	mu     sync.Mutex
	seq    uint64
	recent []statusEvent // oldest first
	subs   map[chan statusEvent]bool

	refMu sync.Mutex
	refs  map[string]string // recipe key (package/opinion CID) → package/opinion, as last seen
}

// New returns the status page of api with opts' trust policy (defaults
// applied) and host name. It serves no events until Start.
func New(api core.API, opts Options, log *slog.Logger) *Server {
	s := &Server{api: api, log: log,
		policy:    consensus.Options{Threshold: opts.Threshold, MinTrusted: opts.MinTrusted},
		hosts:     map[string]bool{},
		heartbeat: opts.Heartbeat,
		lookups:   rate.NewLimiter(50, 100),
		renders:   make(chan struct{}, statusMaxRenders),
		streams:   make(chan struct{}, statusMaxStreams),
		done:      make(chan struct{}),
		subs:      map[chan statusEvent]bool{},
		refs:      map[string]string{},
	}
	if s.policy.Threshold == 0 {
		s.policy.Threshold = consensus.DefaultThreshold
	}
	if s.policy.MinTrusted <= 0 {
		s.policy.MinTrusted = consensus.DefaultMinTrusted
	}
	if s.heartbeat <= 0 {
		s.heartbeat = defaultHeartbeat
	}
	if h, _, err := net.SplitHostPort(opts.Addr); err == nil && h != "" {
		s.hosts[strings.ToLower(h)] = true
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		h = strings.ToLower(h)
		s.hosts[h], s.hosts[h+".local"] = true, true
	}
	return s
}

// Start follows the API's event stream until ctx ends (or the node
// closes it), keeping the recent events and passing them to the page's
// streams; then the open streams end and new ones are refused. Call it
// once.
func (s *Server) Start(ctx context.Context) error {
	ch, err := s.api.Events(ctx)
	if err != nil {
		return fmt.Errorf("status page: event stream: %w", err)
	}
	go func() {
		defer s.stop()
		for ev := range ch {
			s.add(s.describe(ctx, ev))
		}
	}()
	return nil
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.done)
	for ch := range s.subs {
		close(ch)
		delete(s.subs, ch)
	}
}

// Handler routes the page, its JSON twin and the event stream. Serve it
// without a write timeout for the whole response (/events streams): each
// handler sets its own write deadline.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /status.json", s.serveJSON)
	mux.HandleFunc("GET /builds.json", s.serveBuilds)
	mux.HandleFunc("GET /events", s.serveEvents)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			// A page on loopback is still reachable from a browser through
			// DNS rebinding: a foreign name that resolves here.
			http.Error(w, fmt.Sprintf("status page: Host %q is not this node: open it by IP address (http://127.0.0.1:PORT/), localhost or the name in status_addr", r.Host), http.StatusMisdirectedRequest)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// hostAllowed accepts IP addresses, localhost and the names in hosts (and
// no Host at all: HTTP/1.0 tools; browsers always send one).
func (s *Server) hostAllowed(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	return net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") || s.hosts[host]
}

// statusPage is what the page shows and /status.json returns.
type statusPage struct {
	Generated     time.Time         `json:"generated"`
	Node          *core.Status      `json:"node"`
	Policy        statusPolicy      `json:"policy"`
	Subscriptions []string          `json:"subscriptions"`
	Recipes       []statusRecipe    `json:"recipes"`
	RedFlags      []statusRedFlag   `json:"red_flags"`
	Peers         []core.PeerInfo   `json:"peers"`
	MorePeers     int               `json:"more_peers,omitempty"`
	Keys          []core.KeyInfo    `json:"trusted_keys"` // keys that vote
	MoreKeys      int               `json:"more_trusted_keys,omitempty"`
	Builds        statusBuilds      `json:"builds"`
	Events        []statusEvent     `json:"events"` // newest first
	LastSeq       uint64            `json:"last_seq"`
	Problems      map[string]string `json:"problems,omitempty"` // by section: what could not be read
}

type statusPolicy struct {
	Threshold  float64 `json:"threshold"`
	MinTrusted int     `json:"min_trusted"`
}

// statusRecipe is one package/opinion: its best-attested recipe.
type statusRecipe struct {
	Ref        string `json:"ref"`           // package/opinion ("package" for vanilla)
	Key        string `json:"key,omitempty"` // recipe key: package/opinion CID, as the scheduler and intents name it
	Subscribed bool   `json:"subscribed"`
	Note       string `json:"note,omitempty"` // why there is no recipe
	Package    string `json:"package"`
	Version    string `json:"version,omitempty"`
	RecipeID   string `json:"recipe_id,omitempty"`
	// Agree is how many trusted builders report the consensus hashes;
	// Trusted how many trusted builders have a claim; MinTrusted how many
	// must agree for SAFE TO INSTALL.
	Agree      int               `json:"agree"`
	Trusted    int               `json:"trusted"`
	MinTrusted int               `json:"min_trusted"`
	Unvetted   int               `json:"unvetted"`
	Score      float64           `json:"score"`
	Threshold  float64           `json:"threshold"`
	Bar        string            `json:"bar,omitempty"`
	Verdict    consensus.Verdict `json:"verdict"`
	Why        string            `json:"why"`
	Conflict   bool              `json:"conflict"`
	RedFlags   int               `json:"red_flags"`
	Own        bool              `json:"own_build"`
	Newest     time.Time         `json:"newest,omitzero"`
}

type statusRedFlag struct {
	Ref string `json:"ref"`
	consensus.RedFlag
}

type statusBuilds struct {
	Queued int `json:"queued"`
	// Running are the rebuilds running here, oldest first, with the end of
	// their log so far.
	Running []statusRunning `json:"running"`
	// Elsewhere are the rebuilds other trusted builders announced (build
	// intents), which this node counts toward each recipe's target.
	Elsewhere []statusIntent `json:"elsewhere"`
	// Finished are the rebuilds finished since the page started, newest
	// first, with the tail of their log.
	Finished []statusEvent `json:"finished"`
}

type statusRunning struct {
	Key     string    `json:"key"` // package/opinion CID (or /vanilla)
	Package string    `json:"package"`
	Opinion string    `json:"opinion,omitempty"`
	Label   string    `json:"label"`          // package/opinion, or the key shortened
	Since   time.Time `json:"since,omitzero"` // when it started
	Reason  string    `json:"reason,omitempty"`
	// LogTail is the end of the build log so far, most recent line last
	// (build output: arbitrary text).
	LogTail []string `json:"log_tail"`
}

// statusIntent is a rebuild another builder announced.
type statusIntent struct {
	Key     string    `json:"key"`           // recipe key: package/opinion CID (or /vanilla)
	Ref     string    `json:"ref,omitempty"` // package/opinion, when the page knows the key
	Label   string    `json:"label"`         // Ref, or the key shortened
	Builder string    `json:"builder"`       // fingerprint
	Started time.Time `json:"started,omitzero"`
	Expires time.Time `json:"expires,omitzero"` // counted until then unless renewed
	Expect  int64     `json:"expect_seconds,omitempty"`
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(statusRenderTime + statusWriteTimeout))
	p, ok := s.snapshotFor(w, r)
	if !ok {
		return
	}
	nonce, err := newNonce()
	if err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	// Only this response's own script and style run: whatever a claim
	// says is text, and were it ever markup it could not execute.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+"'; "+
		"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Content-Type", "text/html; charset=utf-8")
	var buf strings.Builder
	if err := statusTmpl.Execute(&buf, struct {
		*statusPage
		Nonce       string
		MaxEvents   int
		MaxFinished int
		PollMs      int64 // how often the page reads /builds.json while Active
		IdlePollMs  int64 // and otherwise
		Active      bool  // rebuilds run here or elsewhere
	}{p, nonce, statusRecent, statusMaxFinished, statusPollEvery.Milliseconds(), statusIdlePollEvery.Milliseconds(),
		len(p.Builds.Running)+len(p.Builds.Elsewhere) > 0}); err != nil {
		s.log.Error("status page: render", "err", err)
		http.Error(w, "status page: render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte(buf.String()))
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(statusRenderTime + statusWriteTimeout))
	p, ok := s.snapshotFor(w, r)
	if !ok {
		return
	}
	writeJSON(w, p)
}

// writeJSON answers with v as indented JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// statusBuildsNow is what /builds.json returns: the rebuilds part of the
// page, and when it was read (the page says "started 3m ago" from it).
type statusBuildsNow struct {
	Generated time.Time `json:"generated"`
	statusBuilds
}

// serveBuilds answers /builds.json, which the page reads to refresh its
// rebuilds (running builds' log tails, intents) without recomputing the
// recipes.
func (s *Server) serveBuilds(w http.ResponseWriter, r *http.Request) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(statusRenderTime + statusWriteTimeout))
	b, ok := computeFor(s, w, r, func(ctx context.Context) (*statusBuildsNow, error) {
		st, err := s.api.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("node status: %w", err)
		}
		evs, _ := s.recentEvents()
		return &statusBuildsNow{Generated: time.Now().UTC(), statusBuilds: s.builds(st, evs)}, nil
	})
	if !ok {
		return
	}
	writeJSON(w, b)
}

// snapshotFor computes the page for one request, at most statusMaxRenders
// at once.
func (s *Server) snapshotFor(w http.ResponseWriter, r *http.Request) (*statusPage, bool) {
	return computeFor(s, w, r, s.snapshot)
}

// computeFor runs compute for one request within statusRenderTime, at most
// statusMaxRenders at once; on failure it has answered the request.
func computeFor[T any](s *Server, w http.ResponseWriter, r *http.Request, compute func(context.Context) (T, error)) (T, bool) {
	var zero T
	ctx, cancel := context.WithTimeout(r.Context(), statusRenderTime)
	defer cancel()
	select {
	case s.renders <- struct{}{}:
		defer func() { <-s.renders }()
	case <-ctx.Done():
		http.Error(w, "status page: busy: too many pages are being computed at once; try again", http.StatusServiceUnavailable)
		return zero, false
	}
	v, err := compute(ctx)
	if err != nil {
		s.log.Warn("status page", "err", err)
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return zero, false
	}
	return v, true
}

// snapshot reads everything the page shows from the API. A section that
// cannot be read is named in Problems; only Status is required.
func (s *Server) snapshot(ctx context.Context) (*statusPage, error) {
	st, err := s.api.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("node status: %w", err)
	}
	p := &statusPage{Generated: time.Now().UTC(), Node: st, Subscriptions: st.Subscriptions,
		Policy:   statusPolicy{Threshold: s.policy.Threshold, MinTrusted: s.policy.MinTrusted},
		Recipes:  []statusRecipe{},
		RedFlags: []statusRedFlag{},
		Peers:    []core.PeerInfo{},
		Keys:     []core.KeyInfo{},
		Problems: map[string]string{},
	}
	p.Events, p.LastSeq = s.recentEvents()
	s.readRecipes(ctx, p)
	s.readPeers(ctx, p)
	s.readKeys(ctx, p)
	p.Builds = s.builds(st, p.Events)
	if len(p.Problems) == 0 {
		p.Problems = nil
	}
	return p, nil
}

// builds is the rebuilds part of the page: st's running builds (with their
// log tails) and other builders' intents, and the finished rebuilds among
// events (newest first). Every list is capped.
func (s *Server) builds(st *core.Status, events []statusEvent) statusBuilds {
	b := statusBuilds{Queued: st.QueuedBuilds, Running: []statusRunning{}, Elsewhere: []statusIntent{}, Finished: []statusEvent{}}
	seen := map[string]bool{}
	for _, rb := range st.Builds {
		if len(b.Running) == statusMaxRows {
			break
		}
		ref := refString(rb.Package, rb.Opinion)
		s.learnRef(rb.Recipe, ref)
		seen[rb.Recipe] = true
		b.Running = append(b.Running, statusRunning{Key: rb.Recipe, Package: rb.Package, Opinion: rb.Opinion, Label: ref,
			Since: rb.Started, Reason: rb.Reason, LogTail: boundTail(rb.LogTail)})
	}
	// A build queue that does not describe its builds names them only.
	for _, k := range st.RunningBuilds {
		if seen[k] || len(b.Running) == statusMaxRows {
			continue
		}
		seen[k] = true
		pkg, _, _ := strings.Cut(k, "/")
		r := statusRunning{Key: k, Package: pkg, Label: s.recipeLabel(k), LogTail: []string{}}
		for _, ev := range events { // newest first
			if ev.Type == core.EventBuildStarted && ev.Package == pkg {
				r.Since = ev.Time
				break
			}
		}
		b.Running = append(b.Running, r)
	}
	for _, in := range st.Intents {
		if len(b.Elsewhere) == statusMaxRows {
			break
		}
		ref := s.recipeRef(in.Recipe)
		label := ref
		if label == "" {
			label = shortKey(in.Recipe)
		}
		b.Elsewhere = append(b.Elsewhere, statusIntent{Key: in.Recipe, Ref: ref, Label: label, Builder: in.Builder,
			Started: in.Started, Expires: in.Expires, Expect: in.Expect})
	}
	for _, ev := range events {
		if ev.Type == core.EventBuildFinished && len(b.Finished) < statusMaxFinished {
			b.Finished = append(b.Finished, ev)
		}
	}
	return b
}

// boundTail is a copy of a running build's log tail within core's bounds
// (the last core.MaxLogTail lines of at most core.MaxLogLine characters,
// valid UTF-8), whatever the API returned.
func boundTail(tail []string) []string {
	if len(tail) > core.MaxLogTail {
		tail = tail[len(tail)-core.MaxLogTail:]
	}
	out := make([]string, len(tail))
	for i, l := range tail {
		out[i] = core.LogLine(l)
	}
	return out
}

// refString is package/opinion as the recipes section names it.
func refString(pkg, opinion string) string {
	r := vocab.Ref{Package: pkg, Opinion: opinion}
	if opinion == vocab.Vanilla {
		r.Opinion = ""
	}
	return r.String()
}

// learnRef remembers which package/opinion a recipe key is, for naming
// other builders' intents (at most statusMaxRefs keys: then it starts over).
func (s *Server) learnRef(key, ref string) {
	if key == "" || ref == "" {
		return
	}
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if _, ok := s.refs[key]; !ok && len(s.refs) >= statusMaxRefs {
		clear(s.refs)
	}
	s.refs[key] = ref
}

// recipeRef is the package/opinion of a recipe key, "" when the page has
// not seen it (a vanilla key names itself).
func (s *Server) recipeRef(key string) string {
	s.refMu.Lock()
	ref, ok := s.refs[key]
	s.refMu.Unlock()
	if ok {
		return ref
	}
	if pkg, rest, _ := strings.Cut(key, "/"); rest == vocab.Vanilla {
		return refString(pkg, "")
	}
	return ""
}

// recipeLabel is the package/opinion of a recipe key, or the key shortened.
func (s *Server) recipeLabel(key string) string {
	if ref := s.recipeRef(key); ref != "" {
		return ref
	}
	return shortKey(key)
}

// shortKey is a recipe key with its opinion CID shortened: "hello/bafkreia…".
func shortKey(key string) string {
	pkg, rest, ok := strings.Cut(key, "/")
	if !ok {
		return short(key, 40)
	}
	return short(pkg, 40) + "/" + short(rest, 12)
}

// readRecipes evaluates the subscriptions, then the packages of recent
// claims, statusMaxRecipes at most.
func (s *Server) readRecipes(ctx context.Context, p *statusPage) {
	type want struct {
		ref        string
		q          core.InfoQuery
		subscribed bool
	}
	var wants []want
	seen := map[string]bool{}
	add := func(pkg, opinion string, subscribed bool) {
		r := vocab.Ref{Package: pkg, Opinion: opinion}
		if opinion == vocab.Vanilla {
			r.Opinion = ""
		}
		ref := r.String()
		if seen[ref] || len(wants) >= statusMaxRecipes {
			return
		}
		seen[ref] = true
		q := core.InfoQuery{Package: r.Package, Opinion: r.Opinion}
		if q.Opinion == "" {
			q.Opinion = vocab.Vanilla
		}
		wants = append(wants, want{ref: ref, q: q, subscribed: subscribed})
	}
	for _, sub := range p.Subscriptions {
		r, err := vocab.ParseRef(sub)
		if err != nil {
			p.Recipes = append(p.Recipes, statusRecipe{Ref: sub, Subscribed: true, Note: err.Error(), Verdict: consensus.Unverified})
			continue
		}
		add(r.Package, r.Opinion, true)
	}
	for _, ev := range p.Events {
		if ev.Type == core.EventClaim && ev.Package != "" {
			add(ev.Package, ev.Opinion, false)
		}
	}
	for _, w := range wants {
		if ctx.Err() != nil {
			p.Problems["recipes"] = "not all recipes were evaluated in time: " + ctx.Err().Error()
			return
		}
		rec := statusRecipe{Ref: w.ref, Subscribed: w.subscribed, Package: w.q.Package, MinTrusted: s.policy.MinTrusted, Threshold: s.policy.Threshold, Verdict: consensus.Unverified}
		info, err := s.api.Info(ctx, w.q)
		switch {
		case core.IsNotFound(err):
			rec.Note = "no claims yet"
			if w.subscribed {
				rec.Note += ": this node builds it when the opinion is known, peers' claims arrive by gossip"
			}
		case err != nil:
			rec.Note = "cannot evaluate: " + err.Error()
		case len(info.Recipes) == 0:
			rec.Note = "no recipe"
		default:
			s.fillRecipe(ctx, &rec, info.Recipes[0])
			s.learnRef(rec.Key, w.ref)
			for _, f := range info.Recipes[0].Report.RedFlags {
				if len(p.RedFlags) < statusMaxRows {
					p.RedFlags = append(p.RedFlags, statusRedFlag{Ref: w.ref, RedFlag: f})
				}
			}
		}
		p.Recipes = append(p.Recipes, rec)
	}
	sort.SliceStable(p.RedFlags, func(i, j int) bool { return p.RedFlags[i].Timestamp.After(p.RedFlags[j].Timestamp) })
}

// fillRecipe sets the trust bar and the verdict of a recipe: the verdict
// for a file whose hash is the consensus hash, as the node decides it
// (core.Decide).
func (s *Server) fillRecipe(ctx context.Context, rec *statusRecipe, ri core.RecipeInfo) {
	rep := ri.Report
	rec.Version, rec.RecipeID, rec.Score, rec.Bar, rec.Conflict, rec.Own = ri.Recipe.Version, ri.Recipe.RecipeID, rep.Score, ri.Bar, rep.Conflict, ri.Own
	rec.RedFlags, rec.Newest = len(rep.RedFlags), ri.Recipe.Newest
	if op := ri.Recipe.Opinion; op.Name == vocab.Vanilla || op.CID == "" {
		rec.Key = attest.RecipeKey(ri.Recipe.Package, "")
	} else {
		rec.Key = attest.RecipeKey(ri.Recipe.Package, op.CID)
	}
	trusted := map[string]bool{}
	for _, g := range rep.Groups {
		for _, b := range g.Trusted {
			trusted[b.Fingerprint] = true
		}
		rec.Unvetted += len(g.Unvetted)
	}
	for _, b := range append(append([]consensus.BuilderClaim{}, rep.Failed...), rep.Unreproducible...) {
		if b.Trusted() {
			trusted[b.Fingerprint] = true
		}
	}
	rec.Trusted = len(trusted)
	if rep.Consensus != nil {
		rec.Agree = len(rep.Consensus.Trusted)
	}
	switch {
	case rep.Conflict:
		rec.Verdict, rec.Why = consensus.DoNotInstall, "trusted builders disagree"
	case rep.Consensus == nil:
		rec.Verdict, rec.Why = consensus.Unverified, "no trusted consensus yet"
	default:
		// The node's decision about the consensus file (core.Decide), as
		// `lebowski verify --no-rebuild` of that file would render it.
		d, err := s.api.Decide(ctx, core.ConsensusFile(ri, rep.Consensus.Artifacts[0]))
		if err != nil {
			rec.Verdict, rec.Why = core.Unverified, "cannot decide: "+err.Error()
			return
		}
		v, reasons := d.Verdict, d.Reasons
		rec.Verdict = v
		if v == consensus.Safe {
			rec.Why = "for files with the consensus hashes"
		} else if len(reasons) > 0 {
			rec.Why = reasons[len(reasons)-1]
			for _, r := range reasons {
				if strings.HasPrefix(r, "only ") || strings.Contains(r, "below the threshold") {
					rec.Why = r
					break
				}
			}
		}
	}
}

func (s *Server) readPeers(ctx context.Context, p *statusPage) {
	peers, err := s.api.Peers(ctx)
	if err != nil {
		if !p.Node.Online {
			p.Problems["peers"] = "this node is offline (no network)"
		} else {
			p.Problems["peers"] = err.Error()
		}
		return
	}
	sort.SliceStable(peers, func(i, j int) bool {
		if peers[i].Score != peers[j].Score {
			return peers[i].Score > peers[j].Score
		}
		return peers[i].ID < peers[j].ID
	})
	if len(peers) > statusMaxRows {
		p.MorePeers = len(peers) - statusMaxRows
		peers = peers[:statusMaxRows]
	}
	p.Peers = peers
}

func (s *Server) readKeys(ctx context.Context, p *statusPage) {
	keys, err := s.api.Keys(ctx)
	if err != nil {
		p.Problems["keys"] = err.Error()
		return
	}
	for _, k := range keys {
		if !k.Trust.Votes() {
			continue
		}
		if len(p.Keys) == statusMaxRows {
			p.MoreKeys++
			continue
		}
		k.PublicKey = nil
		p.Keys = append(p.Keys, k)
	}
}

// describe looks up the claim an event names (at most 50 a second) and
// writes its line; a finished build gets the tail of its log.
func (s *Server) describe(ctx context.Context, ev core.Event) statusEvent {
	out := statusEvent{Event: ev}
	if out.Time.IsZero() {
		out.Time = time.Now()
	}
	out.Clock = out.Time.UTC().Format("15:04:05")
	if ev.ClaimID != "" && s.lookups.Allow() {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if c, err := s.api.Claim(lctx, ev.ClaimID); err == nil && c.Statement != nil {
			st := c.Statement
			if out.Package == "" {
				out.Package, out.Opinion = st.Package, st.Opinion.Name
			}
			out.Result, out.Builder = string(st.Result), st.Builder
			if ev.Type == core.EventBuildFinished && st.LogCID != "" {
				out.LogTail = s.logTail(lctx, st.LogCID)
			}
		}
		cancel()
	}
	ref := vocab.Ref{Package: out.Package, Opinion: out.Opinion}
	if out.Opinion == vocab.Vanilla {
		ref.Opinion = ""
	}
	what := ref.String()
	if out.Package == "" {
		what = "(package not known)"
	}
	switch ev.Type {
	case core.EventClaim:
		kind := "claim"
		if out.Result == string(attest.ResultMismatch) {
			kind = "RED FLAG"
		}
		out.Text = fmt.Sprintf("%s %s %s", kind, short(ev.ClaimID, 12), what)
		if out.Result != "" && out.Result != string(attest.ResultMismatch) {
			out.Text += " " + out.Result
		}
		if out.Builder != "" {
			out.Text += " by " + short(out.Builder, 16)
		}
		switch ev.From {
		case "self":
			out.Text += ", signed by this node"
		case "import":
			out.Text += ", imported"
		case "":
		default:
			out.Text += ", from peer " + short(ev.From, 16)
		}
	case core.EventBuildStarted:
		out.Text = "rebuild started: " + what
	case core.EventBuildFinished:
		var d struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		out.Text = fmt.Sprintf("rebuild finished: %s %s, claim %s", what, d.Status, short(ev.ClaimID, 12))
	default:
		out.Text = ev.Type + " " + what
	}
	return out
}

// logTail is the last lines of a build log blob.
func (s *Server) logTail(ctx context.Context, cid string) string {
	b, err := s.api.GetBlob(ctx, cid)
	if err != nil {
		return "(log " + short(cid, 16) + " not readable: " + err.Error() + ")"
	}
	if len(b) > statusMaxLog {
		return "(log " + short(cid, 16) + " is too large to show: `lebowski blob get " + cid + "`)"
	}
	if len(b) > statusLogTailBytes {
		b = b[len(b)-statusLogTailBytes:]
	}
	lines := strings.Split(strings.TrimRight(strings.ToValidUTF8(string(b), "\uFFFD"), "\n"), "\n")
	if len(lines) > statusLogTail {
		lines = lines[len(lines)-statusLogTail:]
	}
	return strings.Join(lines, "\n")
}

// add keeps ev among the recent events and passes it to every stream; a
// stream whose queue is full misses it.
func (s *Server) add(ev statusEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	ev.Seq = s.seq
	s.recent = append(s.recent, ev)
	if len(s.recent) > statusRecent {
		s.recent = append(s.recent[:0], s.recent[len(s.recent)-statusRecent:]...)
	}
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// recentEvents returns the recent events, newest first, and the newest
// sequence number.
func (s *Server) recentEvents() ([]statusEvent, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]statusEvent, len(s.recent))
	for i, ev := range s.recent {
		out[len(out)-1-i] = ev
	}
	return out, s.seq
}

// subscribe returns the events after seq that the ring still holds and a
// queue of the ones to come; ok is false once the API's stream ended.
func (s *Server) subscribe(after uint64) (missed []statusEvent, ch chan statusEvent, cancel func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return nil, nil, nil, false
	default:
	}
	for _, ev := range s.recent {
		if ev.Seq > after {
			missed = append(missed, ev)
		}
	}
	ch = make(chan statusEvent, statusStreamBuffer)
	s.subs[ch] = true
	return missed, ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.subs[ch] {
			delete(s.subs, ch)
			close(ch)
		}
	}, true
}

// serveEvents streams events as Server-Sent Events: "id: seq" and "data:
// <statusEvent JSON>". A reconnecting browser sends Last-Event-ID; the page
// asks for ?after=<the newest event it shows>.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		s.log.Debug("status page: event stream refused, too many open", "remote", r.RemoteAddr, "max", statusMaxStreams)
		w.Header().Set("Retry-After", "30")
		http.Error(w, fmt.Sprintf("status page: %d live event streams are open already (the most at once): close a tab showing the page, or reload later", statusMaxStreams), http.StatusServiceUnavailable)
		return
	}
	var after uint64
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil && n > after {
			after = n
		}
	}
	missed, ch, cancel, ok := s.subscribe(after)
	if !ok {
		http.Error(w, "status page: the node is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer cancel()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(format string, a ...any) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(statusWriteTimeout)); err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, format, a...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	send := func(ev statusEvent) bool {
		b, err := json.Marshal(ev)
		if err != nil {
			return false
		}
		return write("id: %d\ndata: %s\n\n", ev.Seq, b)
	}
	if !write("retry: 3000\n\n") {
		return
	}
	sent := 0
	for _, ev := range missed {
		if !send(ev) {
			return
		}
		sent++
	}
	ctx, stop := context.WithTimeout(r.Context(), statusStreamMax)
	defer stop()
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	for sent < statusStreamEvents {
		select {
		case ev, ok := <-ch:
			if !ok || !send(ev) {
				return
			}
			sent++
		case <-beat.C:
			if !write(": keep-alive\n\n") {
				return
			}
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// newNonce is a CSP nonce in URL-safe base64: html/template would write a
// '+' of standard base64 as &#43; in the attribute (browsers decode it, but
// the page's bytes would no longer contain the nonce as sent in the header).
func newNonce() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// short is the first n characters of s and "…" when it is longer.
func short(s string, n int) string { return human.Short(s, n) }

// agoText says how long before now t was.
func agoText(now, t time.Time) string { return human.Ago(now, t, "-") }

// untilText says how long after now t is: "in 5m", "expired".
func untilText(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if d := t.Sub(now); d > 0 {
		return "in " + human.Span(d)
	}
	return "expired"
}

// expectText is a builder's guess of a build's duration, in seconds.
func expectText(secs int64) string {
	if secs <= 0 {
		return "unknown"
	}
	return "~" + human.Span(time.Duration(secs)*time.Second)
}

// logLines is a log tail as the text of a <pre>: a first empty line gets
// a newline before it, which the HTML parser drops.
func logLines(lines []string) string {
	s := strings.Join(lines, "\n")
	if strings.HasPrefix(s, "\n") {
		s = "\n" + s
	}
	return s
}
