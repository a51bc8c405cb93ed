// Package aptrepo is the node's apt repository of verified packages (a
// service of lebowskid): the .debs of the subscriptions', repo.packages'
// and `lebowski fetch`ed recipes whose consensus says SAFE TO INSTALL,
// fetched from peers by hash when this node did not build them, checked,
// and served with cmd/internal/repo (docs/APT.md).
//
// It reads verdicts, events and blobs through core.API and needs two
// things from the network (Network); the daemon serves Handler on its
// HTTP listener and passes Mirror to core.WithMirror.
package aptrepo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/debfile"
	"github.com/lebowski-dist/lebowski/cmd/internal/repo"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// Network is what the service needs from the peer-to-peer layer.
type Network interface {
	// Subscribe follows a topic ("package[/opinion]") so that the claims
	// of its recipes reach the node.
	Subscribe(topic string) error
	// SyncSome catches up with what a few connected peers hold, giving
	// up when ctx ends.
	SyncSome(ctx context.Context)
}

// Options configure the service.
type Options struct {
	// Addr is where the repository listens (repo.addr). Empty: the node
	// serves no repository, and Mirror says how to turn it on.
	Addr string
	// Packages are mirrored besides the node's subscriptions
	// (repo.packages: "pkg" or "pkg/opinion").
	Packages []string
	// DataDir holds mirror.json, the refs Mirror added.
	DataDir string
	// ConfigPath is the node's config file, named when the repository is
	// off.
	ConfigPath string
	// Identity is the node's builder key: it signs InRelease, and its
	// public key is served as /lebowski.asc.
	Identity *attest.Identity
}

// refreshEvery bounds how stale the repository gets without claim events.
const refreshEvery = 30 * time.Second

// claimSettle is how long Run waits after a claim event before it
// refreshes (a burst of claims costs one refresh).
const claimSettle = 500 * time.Millisecond

// syncBound bounds the catch-up with peers when Mirror adds a ref.
const syncBound = 30 * time.Second

// Service is the apt repository.
type Service struct {
	o   Options
	api core.API
	net Network
	log *slog.Logger
	srv *repo.Server // nil when the repository is off

	refreshMu sync.Mutex // one refresh at a time

	mu      sync.Mutex
	extra   map[string]bool               // refs added by Mirror (saved)
	results map[string]*core.MirrorResult // by ref, from the last refresh
	known   map[string]repo.Package       // by sha256: inspected .debs
	url     string
}

var _ core.Mirrorer = (*Service)(nil)

// New makes the service and loads the refs saved in mirror.json (an
// unreadable list is ignored with a warning). With o.Addr empty the
// service is off: Mirror explains how to turn it on, Run returns at once.
func New(o Options, api core.API, net Network, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o, api: api, net: net, log: log,
		extra: map[string]bool{}, results: map[string]*core.MirrorResult{}, known: map[string]repo.Package{}}
	if o.Addr == "" {
		return s, nil
	}
	if o.Identity == nil {
		return nil, fmt.Errorf("repo: no builder key to sign the repository with")
	}
	arm, err := o.Identity.ArmoredPublicKey()
	if err != nil {
		return nil, err
	}
	s.srv = repo.NewServer(func(ctx context.Context, sum string) ([]byte, error) {
		cid, err := vocab.CIDOfSHA256Hex(sum)
		if err != nil {
			return nil, err
		}
		return api.GetBlob(ctx, cid)
	}, arm)
	if b, err := os.ReadFile(s.listPath()); err == nil {
		var saved []string
		if err := json.Unmarshal(b, &saved); err != nil {
			log.Warn("ignoring an unreadable mirror list", "path", s.listPath(), "err", err)
		}
		for _, spec := range saved {
			if r, err := vocab.ParseRef(spec); err == nil {
				s.extra[r.String()] = true
			}
		}
	}
	return s, nil
}

// listPath is mirror.json, the refs Mirror added.
func (s *Service) listPath() string { return filepath.Join(s.o.DataDir, "mirror.json") }

// Listen opens the repository's TCP listener on Options.Addr; the URL of
// what it accepts is the one Mirror reports.
func (s *Service) Listen() (net.Listener, error) {
	if s.srv == nil {
		return nil, fmt.Errorf("repo: the repository is off (no repo.addr)")
	}
	ln, err := net.Listen("tcp", s.o.Addr)
	if err != nil {
		return nil, fmt.Errorf("repo: listen %s: %w", s.o.Addr, err)
	}
	s.mu.Lock()
	s.url = "http://" + ln.Addr().String()
	s.mu.Unlock()
	s.log.Info("apt repository", "url", "http://"+ln.Addr().String())
	return ln, nil
}

// Handler serves the repository (read-only; 404 everywhere when off).
func (s *Service) Handler() http.Handler {
	if s.srv == nil {
		return http.NotFoundHandler()
	}
	return s.srv
}

// joinTopics follows the topics of the mirrored refs that are not
// subscriptions (those are joined by the daemon's subscribe).
func (s *Service) joinTopics() {
	s.mu.Lock()
	refs := make([]string, 0, len(s.extra)+len(s.o.Packages))
	for spec := range s.extra {
		refs = append(refs, spec)
	}
	s.mu.Unlock()
	refs = append(refs, s.o.Packages...)
	for _, spec := range refs {
		if err := s.net.Subscribe(spec); err != nil {
			s.log.Warn("repo: cannot follow topic", "ref", spec, "err", err)
		}
	}
}

// Run refreshes the repository at start, shortly after new claims (a
// burst of claims costs one refresh) and every 30 s, until ctx ends. It
// returns at once when the repository is off.
func (s *Service) Run(ctx context.Context) {
	if s.srv == nil {
		return
	}
	s.joinTopics()
	events, err := s.api.Events(ctx)
	if err != nil {
		s.log.Error("repo: no event stream", "err", err)
	}
	tick := time.NewTicker(refreshEvery)
	defer tick.Stop()
	debounce := time.NewTimer(0)
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.refresh(ctx)
		case <-debounce.C:
			s.refresh(ctx)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Type == core.EventClaim {
				debounce.Reset(claimSettle)
			}
		}
	}
}

// Mirror implements core.Mirrorer: it adds ref to the refs the
// repository keeps (saved in mirror.json; the first time it follows the
// ref's topic and catches up with a few peers), refreshes the repository
// and reports what it serves for ref.
func (s *Service) Mirror(ctx context.Context, ref vocab.Ref) (*core.MirrorResult, error) {
	if s.srv == nil {
		return nil, core.Invalid(fmt.Errorf("this node serves no apt repository: set repo.addr in %s (e.g. 127.0.0.1:9465) and restart lebowskid", s.o.ConfigPath))
	}
	spec := ref.String()
	s.mu.Lock()
	added := !s.extra[spec]
	s.extra[spec] = true
	var saved []string
	for r := range s.extra {
		saved = append(saved, r)
	}
	s.mu.Unlock()
	if added {
		// Follow the recipe's claims (without building it) and catch up
		// with what peers already hold.
		if err := s.net.Subscribe(spec); err != nil {
			return nil, err
		}
		sctx, cancel := context.WithTimeout(ctx, syncBound)
		s.net.SyncSome(sctx)
		cancel()
		sort.Strings(saved)
		b, _ := json.MarshalIndent(saved, "", "  ")
		if err := writeAtomic(s.listPath(), append(b, '\n')); err != nil {
			return nil, err
		}
	}
	s.refresh(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := s.results[spec]
	if !ok {
		return nil, fmt.Errorf("repo: %s was not refreshed", spec)
	}
	return res, nil
}

func writeAtomic(p string, b []byte) error {
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// refresh rebuilds the index from the current consensus. It is
// serialised: concurrent callers wait for one refresh each.
func (s *Service) refresh(ctx context.Context) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	st, err := s.api.Status(ctx)
	if err != nil {
		s.log.Error("repo: subscriptions", "err", err)
		return
	}
	refs := map[string]bool{}
	for _, spec := range st.Subscriptions {
		refs[spec] = true
	}
	for _, spec := range s.o.Packages {
		if r, err := vocab.ParseRef(spec); err == nil {
			refs[r.String()] = true
		}
	}
	s.mu.Lock()
	for spec := range s.extra {
		refs[spec] = true
	}
	s.mu.Unlock()
	results := map[string]*core.MirrorResult{}
	var pkgs []repo.Package
	for spec := range refs {
		if ctx.Err() != nil {
			return
		}
		r, _ := vocab.ParseRef(spec)
		res := s.mirrorRef(ctx, r)
		results[spec] = res
		for _, p := range res.Packages {
			s.mu.Lock()
			pkgs = append(pkgs, s.known[p.SHA256])
			s.mu.Unlock()
		}
	}
	idx, err := repo.Build(pkgs, s.o.Identity, time.Now())
	if err != nil {
		s.log.Error("repo: index", "err", err)
		return
	}
	if old := s.srv.Index(); old == nil || !bytes.Equal(old.Packages, idx.Packages) {
		s.srv.Set(idx)
		s.log.Info("repo: index updated", "packages", len(idx.List()))
	}
	s.mu.Lock()
	for _, res := range results {
		res.URL = s.url
	}
	s.results = results
	s.mu.Unlock()
}

// mirrorRef finds the SAFE .debs of ref's best-attested recipe, fetching
// the ones this node lacks from peers by hash.
func (s *Service) mirrorRef(ctx context.Context, r vocab.Ref) *core.MirrorResult {
	res := &core.MirrorResult{Ref: r.String(), Packages: []core.RepoPackage{}}
	op := r.Opinion
	if op == "" {
		op = vocab.Vanilla
	}
	info, err := s.api.Info(ctx, core.InfoQuery{Package: r.Package, Opinion: op})
	if err != nil {
		res.Reason = err.Error()
		return res
	}
	ri := info.Recipes[0]
	g := ri.Report.Consensus
	if g == nil {
		res.Reason = "no trusted consensus yet (" + strings.Join(ri.Report.Reasons, "; ") + ")"
		return res
	}
	var why []string
	for _, a := range g.Artifacts {
		if !strings.HasSuffix(a.Name, ".deb") {
			continue
		}
		vr, err := s.api.Decide(ctx, core.ConsensusFile(ri, a))
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", a.Name, err))
			continue
		}
		if vr.Verdict != core.Safe {
			why = append(why, fmt.Sprintf("%s: %s (%s)", a.Name, vr.Verdict, strings.Join(vr.Reasons, "; ")))
			continue
		}
		p, err := s.mirrorDeb(ctx, a.Name, a.SHA256, ri.Recipe.RecipeID)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", a.Name, err))
			continue
		}
		res.Packages = append(res.Packages, core.RepoPackage{Name: p.Name, SHA256: p.SHA256, Size: p.Size, RecipeID: p.RecipeID})
	}
	res.Reason = strings.Join(why, "; ")
	return res
}

// mirrorDeb makes sure the node holds the .deb with this hash (fetched
// from a peer if need be: core checks it against the CID and keeps it)
// and reads its control data once. A known .deb is held: it became known
// only once FetchBlob had returned it from the node or kept it, and the
// store never drops a blob.
func (s *Service) mirrorDeb(ctx context.Context, name, sum, recipeID string) (repo.Package, error) {
	cid, err := vocab.CIDOfSHA256Hex(sum)
	if err != nil {
		return repo.Package{}, err
	}
	s.mu.Lock()
	p, ok := s.known[sum]
	s.mu.Unlock()
	if ok {
		return p, nil
	}
	data, err := s.api.FetchBlob(ctx, cid)
	if err != nil {
		return repo.Package{}, fmt.Errorf("not available from this node or its peers: %w", err)
	}
	if vocab.SHA256Hex(data) != sum {
		return repo.Package{}, fmt.Errorf("the bytes held for %s do not hash to it", cid)
	}
	info, err := debfile.Inspect(ctx, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return repo.Package{}, err
	}
	if info.FileName() != name {
		return repo.Package{}, fmt.Errorf("the attested file is %s by its control data", info.FileName())
	}
	p = repo.Package{Name: name, SHA256: sum, Size: int64(len(data)), RecipeID: recipeID, Control: info.Control}
	s.mu.Lock()
	s.known[sum] = p
	s.mu.Unlock()
	s.log.Info("repo: holding package", "file", name, "sha256", sum)
	return p, nil
}
