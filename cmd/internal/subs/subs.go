// Package subs is the node's subscriptions: the opinion topics it
// follows (config and runtime, saved across restarts), the opinion of
// each (the operator's opinions directory, the bundles fetched before,
// else from peers by the CID the best-attested claims name), and what
// that means for the build service: a followed recipe is wanted, an
// unfollowed or replaced one dropped.
//
// It implements core.Subscriber, and hears of new claims through
// ClaimArrived (the daemon's core.Observer). Its dependencies are the
// interfaces it declares: Core (the core API's Opinion and PutBlob),
// Topics (the network's topic subscriptions) and Builds.
package subs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
)

// Core is what subscriptions need of the core API: opinion bundles from
// peers, and the blob store to keep bundles in (so peers can fetch them
// by the CID this node's claims name).
type Core interface {
	Opinion(ctx context.Context, q core.OpinionQuery) (*core.OpinionBundle, error)
	PutBlob(ctx context.Context, data []byte) (string, error)
}

// Topics joins and leaves the gossip topic of a subscription ("pkg/name").
type Topics interface {
	Subscribe(topic string) error
	Unsubscribe(topic string) error
}

// Builds is the build service: the recipes a subscription follows are
// wanted, until they are not (builds.Service).
type Builds interface {
	Want(pkg string, op *opinions.Opinion, reason string)
	Drop(pkg string, op *opinions.Opinion)
}

// Config is where subscriptions come from and where opinions are.
type Config struct {
	Subscribe   []string // the config's subscriptions ("pkg/opinion")
	OpinionsDir string   // the operator's opinions directory
	FetchedDir  string   // the opinion bundles fetched from peers
	SavePath    string   // the subscriptions made at runtime (JSON)
}

// Deps are the service's collaborators.
type Deps struct {
	Topics Topics
	Builds Builds
	Log    *slog.Logger
}

// Service is the node's subscriptions.
type Service struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	core Core
	gap  time.Duration // claimGap (tests shorten it)

	mu   sync.Mutex
	subs map[string]*subscription // by "pkg/name"
}

// subscription is one followed topic. op is nil for a vanilla build, and
// while the opinion of a ref is not known yet (waiting: no local file and
// no claim naming its content, or not fetched yet).
type subscription struct {
	ref     vocab.Ref
	op      *opinions.Opinion
	waiting bool
	// heard is when a peer's claim last made this subscription act
	// (fetch its opinion, offer its recipe): at most once per claimGap.
	heard time.Time
}

// claimGap spaces what peers' claims make one subscription do. A flood
// of claims naming a followed recipe (a Sybil flood, a large sync) then
// costs one fetch or one scheduler look per claimGap, not one per claim:
// each look reads every claim of the recipe. Nothing is lost by the
// gap: a claim only adds coverage, the scheduler looks again at every
// trust refresh, and a waiting opinion is fetched again at the next
// claim after the gap.
const claimGap = 2 * time.Second

var _ core.Subscriber = (*Service)(nil)

// New makes the service; Connect gives it the core node, Start joins the
// saved subscriptions.
func New(cfg Config, deps Deps) *Service {
	return &Service{cfg: cfg, deps: deps, log: deps.Log, gap: claimGap, subs: map[string]*subscription{}}
}

// Connect gives the service its core node after core.Open: the node
// needs the service (its Subscriber) to be made. Call it before Start.
func (s *Service) Connect(c Core) { s.core = c }

// Start follows the config's subscriptions and the ones saved at runtime
// (the network must be up); a subscription that fails is logged.
func (s *Service) Start(ctx context.Context) {
	for _, r := range s.saved() {
		if err := s.subscribe(ctx, r, false); err != nil {
			s.log.Error("subscription", "topic", r, "err", err)
		}
	}
}

// Subscribe implements core.Subscriber: it joins the topic of ref, finds
// the opinion (the opinions directory, then the ones fetched before, else
// from peers by the CID the best-attested claims name) and queues a
// rebuild if this node has no own claim for the opinion's content; off
// leaves the topic. Runtime changes persist across restarts.
func (s *Service) Subscribe(ctx context.Context, ref vocab.Ref, on bool) error {
	if !on {
		spec := ref.String()
		s.mu.Lock()
		sub, ok := s.subs[spec]
		var op *opinions.Opinion
		waiting := true
		if ok {
			op, waiting = sub.op, sub.waiting
		}
		delete(s.subs, spec)
		s.mu.Unlock()
		if !ok {
			return core.Invalid(fmt.Errorf("not subscribed to %s", spec))
		}
		if !waiting {
			s.deps.Builds.Drop(ref.Package, op) // no longer wanted here
		}
		if err := s.deps.Topics.Unsubscribe(spec); err != nil {
			return err
		}
		return s.save()
	}
	if err := s.subscribe(ctx, ref, true); err != nil {
		return err
	}
	return s.save()
}

func (s *Service) subscribe(ctx context.Context, ref vocab.Ref, strict bool) error {
	spec := ref.String()
	sub := &subscription{ref: ref}
	if ref.Opinion != "" {
		o, err := opinions.FindIn(s.roots(), spec)
		switch {
		case err == nil:
			sub.op = o
			s.keepBundle(ctx, o)
		case errors.Is(err, opinions.ErrNotFound):
			sub.waiting = true
		case strict:
			return core.Invalid(fmt.Errorf("subscription %s: %w", spec, err))
		default:
			return fmt.Errorf("subscription %s: %w", spec, err)
		}
	}
	if err := s.deps.Topics.Subscribe(spec); err != nil {
		return err
	}
	s.mu.Lock()
	s.subs[spec] = sub
	s.mu.Unlock()
	if sub.waiting {
		s.log.Info("subscribed; no local opinion file, fetching it from peers when claims name it", "topic", spec)
		go s.fetchOpinion(ctx, spec)
		return nil
	}
	s.deps.Builds.Want(ref.Package, sub.op, "subscribed")
	return nil
}

// roots are where opinions are looked up: the operator's opinions
// directory, then the bundles fetched from peers.
func (s *Service) roots() []string { return []string{s.cfg.OpinionsDir, s.cfg.FetchedDir} }

// keepBundle stores an opinion's bundle as a blob, so peers can fetch it
// by the CID this node's claims name.
func (s *Service) keepBundle(ctx context.Context, o *opinions.Opinion) {
	if _, err := s.core.PutBlob(ctx, o.Canonical()); err != nil {
		s.log.Warn("keeping the opinion bundle", "opinion", o.Package+"/"+o.Name, "err", err)
	}
}

// fetchOpinion gets the opinion of a waiting subscription from peers: the
// content the best-attested claims name, checked against its CID and kept
// under the fetched-opinions directory. It is retried when a claim
// arrives.
func (s *Service) fetchOpinion(ctx context.Context, spec string) {
	s.mu.Lock()
	sub, ok := s.subs[spec]
	if !ok || !sub.waiting {
		s.mu.Unlock()
		return
	}
	ref := sub.ref
	s.mu.Unlock()
	b, err := s.core.Opinion(ctx, core.OpinionQuery{Package: ref.Package, Name: ref.Opinion})
	if err != nil {
		s.log.Info("opinion not available yet", "topic", spec, "err", err)
		return
	}
	o, err := opinions.WriteBundle(s.cfg.FetchedDir, b.CID, b.Data)
	if err != nil {
		s.log.Warn("refused an opinion bundle from peers", "topic", spec, "cid", b.CID, "err", err)
		return
	}
	s.log.Info("fetched opinion from peers", "topic", spec, "cid", o.CID(), "path", o.Path)
	s.mu.Lock()
	if cur, ok := s.subs[spec]; ok && cur.waiting {
		cur.op, cur.waiting = o, false
	}
	s.mu.Unlock()
	s.deps.Builds.Want(ref.Package, o, "opinion fetched from peers")
}

// ClaimArrived hears of a claim of another builder new to the store: a
// claim naming the opinion a subscription waits for triggers a fetch; a
// claim for a followed recipe offers it to the build service.
func (s *Service) ClaimArrived(c *attest.Claim) {
	st := c.Statement
	spec := vocab.Ref{Package: st.Package, Opinion: st.Opinion.Name}.String()
	now := time.Now()
	s.mu.Lock()
	sub, ok := s.subs[spec]
	var o *opinions.Opinion
	waiting := false
	if ok {
		if now.Sub(sub.heard) < s.gap {
			ok = false // acted on a claim moments ago
		} else {
			sub.heard = now
			o, waiting = sub.op, sub.waiting
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
	case waiting:
		go s.fetchOpinion(context.Background(), spec)
	case o == nil && st.Opinion.CID == "", o != nil && o.CID() == st.Opinion.CID:
		s.deps.Builds.Want(st.Package, o, "peer claim "+c.ID)
	}
}

// Reload looks the subscribed opinions up again (SIGHUP): an opinion whose
// content changed gets its new CID (and a rebuild); waiting ones are
// fetched again.
func (s *Service) Reload(ctx context.Context) {
	s.mu.Lock()
	subs := make([]*subscription, 0, len(s.subs))
	for _, sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		if sub.ref.Opinion == "" {
			continue
		}
		spec := sub.ref.String()
		o, err := opinions.FindIn(s.roots(), spec)
		if err != nil {
			if sub.waiting {
				go s.fetchOpinion(ctx, spec)
			} else {
				s.log.Warn("reload: keeping the loaded opinion", "topic", spec, "err", err)
			}
			continue
		}
		s.mu.Lock()
		old := sub.op
		changed := old == nil || old.CID() != o.CID()
		sub.op, sub.waiting = o, false
		s.mu.Unlock()
		if changed && old != nil {
			s.deps.Builds.Drop(sub.ref.Package, old) // the old content is not what we follow any more
		}
		if changed {
			s.log.Info("opinion reloaded", "topic", spec, "cid", o.CID())
			s.keepBundle(ctx, o)
			s.deps.Builds.Want(sub.ref.Package, o, "opinion changed")
		}
	}
}

// Opinion is the opinion a subscription ("pkg/name") follows: nil for a
// vanilla one, one still waiting for its opinion, or no subscription.
func (s *Service) Opinion(spec string) *opinions.Opinion {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub, ok := s.subs[spec]; ok {
		return sub.op
	}
	return nil
}

// saved are the config's subscriptions and the ones saved at runtime.
func (s *Service) saved() []vocab.Ref {
	seen := map[string]bool{}
	var out []vocab.Ref
	add := func(spec string) {
		r, err := vocab.ParseRef(spec)
		if err != nil {
			s.log.Warn("ignoring a saved subscription", "topic", spec, "err", err)
			return
		}
		if !seen[r.String()] {
			seen[r.String()] = true
			out = append(out, r)
		}
	}
	for _, spec := range s.cfg.Subscribe {
		add(spec)
	}
	if b, err := os.ReadFile(s.cfg.SavePath); err == nil {
		var saved []string
		if err := json.Unmarshal(b, &saved); err != nil {
			s.log.Warn("ignoring an unreadable subscriptions file", "path", s.cfg.SavePath, "err", err)
		}
		for _, spec := range saved {
			add(spec)
		}
	}
	return out
}

// save writes the current subscriptions (atomically).
func (s *Service) save() error {
	b, _ := json.MarshalIndent(s.Subscriptions(), "", "  ")
	p := s.cfg.SavePath
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save subscriptions: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("save subscriptions: %w", err)
	}
	return nil
}

// Subscriptions implements core.Subscriber.
func (s *Service) Subscriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.subs))
	for spec := range s.subs {
		out = append(out, spec)
	}
	sort.Strings(out)
	return out
}
