package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder/debfile"
	"github.com/lebowski-dist/lebowski/cmd/internal/core"
	"github.com/lebowski-dist/lebowski/cmd/internal/repo"
)

// mirror is the daemon's apt repository of verified packages: the .debs
// of the subscriptions', repo.packages' and `lebowski fetch`ed recipes
// whose consensus says SAFE TO INSTALL, fetched from peers by hash when
// this node did not build them, checked, and served (docs/APT.md).
type mirror struct {
	srv *repo.Server

	mu      sync.Mutex
	extra   map[string]bool               // refs added by Mirror (saved)
	results map[string]*core.MirrorResult // by ref, from the last refresh
	known   map[string]repo.Package       // by sha256: inspected .debs
	url     string
}

// refreshEvery bounds how stale the repository gets without claim events.
const refreshEvery = 30 * time.Second

func (d *Daemon) mirrorPath() string { return filepath.Join(d.cfg.DataDir, "mirror.json") }

func newMirror(d *Daemon) (*mirror, error) {
	arm, err := d.id.ArmoredPublicKey()
	if err != nil {
		return nil, err
	}
	m := &mirror{extra: map[string]bool{}, results: map[string]*core.MirrorResult{}, known: map[string]repo.Package{}}
	m.srv = repo.NewServer(func(ctx context.Context, sum string) ([]byte, error) {
		cid, err := vocab.CIDOfSHA256Hex(sum)
		if err != nil {
			return nil, err
		}
		return d.st.GetBlob(cid)
	}, arm)
	if b, err := os.ReadFile(d.mirrorPath()); err == nil {
		var saved []string
		if err := json.Unmarshal(b, &saved); err != nil {
			d.log.Warn("ignoring an unreadable mirror list", "path", d.mirrorPath(), "err", err)
		}
		for _, s := range saved {
			if r, err := vocab.ParseRef(s); err == nil {
				m.extra[r.String()] = true
			}
		}
	}
	return m, nil
}

// listenRepo opens the repository's HTTP listener.
func (d *Daemon) listenRepo() (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", d.cfg.Repo.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("repo: listen %s: %w", d.cfg.Repo.Addr, err)
	}
	d.mirror.url = "http://" + ln.Addr().String()
	d.log.Info("apt repository", "url", d.mirror.url)
	return newHTTPServer(d.mirror.srv, 30*time.Second, 10*time.Minute), limitListener(ln), nil
}

// syncNow catches up with a few connected peers (bounded: 30 s).
func (d *Daemon) syncNow(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, p := range d.net.Peers() {
		if i == 4 || ctx.Err() != nil {
			return
		}
		if _, err := d.net.SyncWith(ctx, p.ID); err != nil {
			d.log.Debug("repo: sync", "peer", p.ID, "err", err)
		}
	}
}

// joinMirrorTopics follows the topics of the mirrored refs that are not
// subscriptions (those are joined by subscribe).
func (d *Daemon) joinMirrorTopics() {
	d.mirror.mu.Lock()
	refs := make([]string, 0, len(d.mirror.extra)+len(d.cfg.Repo.Packages))
	for s := range d.mirror.extra {
		refs = append(refs, s)
	}
	d.mirror.mu.Unlock()
	refs = append(refs, d.cfg.Repo.Packages...)
	for _, s := range refs {
		if err := d.net.Subscribe(s); err != nil {
			d.log.Warn("repo: cannot follow topic", "ref", s, "err", err)
		}
	}
}

// runMirror refreshes the repository at start, shortly after new claims
// (a burst of claims costs one refresh) and every refreshEvery, until ctx
// ends.
func (d *Daemon) runMirror(ctx context.Context) {
	d.joinMirrorTopics()
	events, err := d.node.Events(ctx)
	if err != nil {
		d.log.Error("repo: no event stream", "err", err)
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
			d.refreshRepo(ctx)
		case <-debounce.C:
			d.refreshRepo(ctx)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Type == core.EventClaim {
				debounce.Reset(500 * time.Millisecond)
			}
		}
	}
}

// Mirror implements core.Mirrorer.
func (d *Daemon) Mirror(ctx context.Context, ref vocab.Ref) (*core.MirrorResult, error) {
	if d.mirror == nil {
		return nil, core.Invalid(fmt.Errorf("this node serves no apt repository: set repo.addr in %s (e.g. 127.0.0.1:9465) and restart lebowskid", d.cfg.Layout().Config()))
	}
	spec := ref.String()
	d.mirror.mu.Lock()
	added := !d.mirror.extra[spec]
	d.mirror.extra[spec] = true
	var saved []string
	for s := range d.mirror.extra {
		saved = append(saved, s)
	}
	d.mirror.mu.Unlock()
	if added {
		// Follow the recipe's claims (without building it) and catch up
		// with what peers already hold.
		if err := d.net.Subscribe(spec); err != nil {
			return nil, err
		}
		d.syncNow(ctx)
		sort.Strings(saved)
		b, _ := json.MarshalIndent(saved, "", "  ")
		if err := writeAtomic(d.mirrorPath(), append(b, '\n')); err != nil {
			return nil, err
		}
	}
	d.refreshRepo(ctx)
	d.mirror.mu.Lock()
	defer d.mirror.mu.Unlock()
	res, ok := d.mirror.results[spec]
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

// refreshRepo rebuilds the index from the current consensus. It is
// serialised: concurrent callers wait for one refresh each.
func (d *Daemon) refreshRepo(ctx context.Context) {
	d.repoMu.Lock()
	defer d.repoMu.Unlock()
	refs := map[string]bool{}
	for _, s := range d.Subscriptions() {
		refs[s] = true
	}
	for _, s := range d.cfg.Repo.Packages {
		if r, err := vocab.ParseRef(s); err == nil {
			refs[r.String()] = true
		}
	}
	d.mirror.mu.Lock()
	for s := range d.mirror.extra {
		refs[s] = true
	}
	d.mirror.mu.Unlock()
	results := map[string]*core.MirrorResult{}
	var pkgs []repo.Package
	for s := range refs {
		if ctx.Err() != nil {
			return
		}
		r, _ := vocab.ParseRef(s)
		res := d.mirrorRef(ctx, r)
		results[s] = res
		for _, p := range res.Packages {
			d.mirror.mu.Lock()
			pkgs = append(pkgs, d.mirror.known[p.SHA256])
			d.mirror.mu.Unlock()
		}
	}
	idx, err := repo.Build(pkgs, d.id, time.Now())
	if err != nil {
		d.log.Error("repo: index", "err", err)
		return
	}
	if old := d.mirror.srv.Index(); old == nil || !bytes.Equal(old.Packages, idx.Packages) {
		d.mirror.srv.Set(idx)
		d.log.Info("repo: index updated", "packages", len(idx.List()))
	}
	d.mirror.mu.Lock()
	for _, res := range results {
		res.URL = d.mirror.url
	}
	d.mirror.results = results
	d.mirror.mu.Unlock()
}

// mirrorRef finds the SAFE .debs of ref's best-attested recipe, fetching
// the ones this node lacks from peers by hash.
func (d *Daemon) mirrorRef(ctx context.Context, r vocab.Ref) *core.MirrorResult {
	res := &core.MirrorResult{Ref: r.String(), Packages: []core.RepoPackage{}}
	op := r.Opinion
	if op == "" {
		op = vocab.Vanilla
	}
	info, err := d.node.Info(ctx, core.InfoQuery{Package: r.Package, Opinion: op})
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
		vr, err := d.node.Verify(ctx, core.VerifyRequest{Package: r.Package, DebianVersion: ri.Recipe.DebianVersion, Opinion: op,
			RecipeID: ri.Recipe.RecipeID, FileName: a.Name, SHA256: a.SHA256})
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", a.Name, err))
			continue
		}
		if vr.Verdict != consensus.Safe {
			why = append(why, fmt.Sprintf("%s: %s (%s)", a.Name, vr.Verdict, strings.Join(vr.Reasons, "; ")))
			continue
		}
		p, err := d.mirrorDeb(ctx, a.Name, a.SHA256, ri.Recipe.RecipeID)
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
// from a peer if need be: core checks it against the CID) and reads its
// control data once.
func (d *Daemon) mirrorDeb(ctx context.Context, name, sum, recipeID string) (repo.Package, error) {
	cid, err := vocab.CIDOfSHA256Hex(sum)
	if err != nil {
		return repo.Package{}, err
	}
	d.mirror.mu.Lock()
	p, ok := d.mirror.known[sum]
	d.mirror.mu.Unlock()
	if ok {
		if held, err := d.st.HasBlob(cid); err == nil && held {
			return p, nil
		}
	}
	data, err := d.node.FetchBlob(ctx, cid)
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
	d.mirror.mu.Lock()
	d.mirror.known[sum] = p
	d.mirror.mu.Unlock()
	d.log.Info("repo: holding package", "file", name, "sha256", sum)
	return p, nil
}
