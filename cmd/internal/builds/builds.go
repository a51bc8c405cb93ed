// Package builds is the node's build service: the build workers, the
// scheduler glue (sched.Scheduler chooses what to build) and the shared
// work with other builders through signed build intents (intents.go,
// docs/SCHEDULER.md). It records results through the core API
// (core.Record) and reaches the network only through the narrow
// interfaces it declares (Publisher); it imports neither p2p nor the
// daemon.
//
// The daemon (or whoever follows recipes) says what it wants built (Want,
// Drop), the core node tells it what arrived (Changed for claims, Intent
// and RenewIntents of core.Observer), and the core's Status reads it as a
// core.BuildQueue with core.BuildDetails.
package builds

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/cmd/internal/sched"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/opinions"
)

// Core is what the service needs of the core node: the API to record
// results through (core.Record), and the event stream for the build
// started and finished events (*core.Node implements it).
type Core interface {
	core.API
	Emit(ev core.Event)
}

// Publisher gossips this node's signed build intents (p2p's intents
// topic). PublishIntent errors are logged; a closed network should
// return nil (nothing to warn about while stopping).
type Publisher interface {
	PublishIntent(ctx context.Context, signed []byte) error
	// HasPeers: someone may hear an intent (else there is no point in
	// waiting for theirs before building).
	HasPeers() bool
}

// Metrics hears what the service does (the daemon's Prometheus metrics).
type Metrics interface {
	// Build counts a build that ended: the status of its claim, or
	// "error" when no claim could be signed.
	Build(status string)
	// BuildTime is the wall time of a build that signed a claim.
	BuildTime(took time.Duration)
	// Queue is the number of recipes waiting.
	Queue(waiting int)
	// Backoff counts a rebuild announced and then left to others.
	Backoff()
}

// DefaultSettle is how long a node waits after announcing an intent before
// it decides to build: long enough for gossip to bring the intents of
// nodes that decided at the same moment (tens of ms on a healthy mesh).
const DefaultSettle = 2 * time.Second

// Config is how the service builds.
type Config struct {
	Builds config.BuildConfig // enabled, concurrency, queue, target, reverify_after, intent_ttl
	Twice  bool               // rebuild: twice
	// Settle is how long to wait for others' intents after announcing
	// one (0: DefaultSettle).
	Settle time.Duration
	// Env is how this node rebuilds: locked inputs from the mirror, the
	// snapshot archive, then peers.
	Env builder.Env
	// Builder, when set, replaces the real podman builder (tests);
	// Factory, when set, makes the builder from Env (tests that keep
	// real input fetching).
	Builder builder.Builder
	Factory func(ctx context.Context, env builder.Env) (builder.Builder, error)
}

// Deps are the service's collaborators.
type Deps struct {
	Identity *attest.Identity // signs the intents; its fingerprint is this builder
	Intents  Publisher
	// Claims lists, for a recipe key, the builders with a claim for it
	// (the store's claims; red flags do not count).
	Claims sched.Claims
	// Votes says whether a builder's fingerprint votes here (trusted).
	Votes   func(fingerprint string) bool
	Metrics Metrics
	Log     *slog.Logger
}

// Service runs this node's rebuilds.
type Service struct {
	cfg          Config
	log          *slog.Logger
	metrics      Metrics
	sched        *sched.Scheduler
	rb           rebuilder
	work         *work
	core         Core
	queueFullLog *rate.Limiter // one "queue full" warning a minute

	mu      sync.Mutex
	running map[string]*runningBuild // by recipe key
	wanted  map[string]buildJob      // what is followed, by recipe key (re-verification)
}

type buildJob struct {
	key    string // attest.RecipeKey
	pkg    string
	op     *opinions.Opinion // nil: vanilla
	reason string
}

// New makes the service; Connect gives it the core node, Run starts it.
func New(cfg Config, deps Deps) *Service {
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	s := &Service{cfg: cfg, log: deps.Log, metrics: deps.Metrics, rb: rebuilder{fixed: cfg.Builder, factory: cfg.Factory, env: cfg.Env},
		queueFullLog: rate.NewLimiter(rate.Every(time.Minute), 1), running: map[string]*runningBuild{}, wanted: map[string]buildJob{}}
	b := cfg.Builds
	s.sched = sched.New(sched.Config{Self: deps.Identity.Fingerprint(), Target: b.Target, MaxAge: b.MaxAge(), Queue: b.Queue}, deps.Claims, deps.Votes, nil)
	s.work = &work{id: deps.Identity, net: deps.Intents, log: deps.Log, settle: cfg.Settle, ttl: b.IntentTTL, claims: map[*workClaim]struct{}{}}
	return s
}

// Connect gives the service its core node after core.Open: the node
// needs the service (its build queue and observer) to be made, the
// service needs the node to record builds. Call it before Run.
func (s *Service) Connect(c Core) { s.core = c }

func jobKey(pkg string, o *opinions.Opinion) string {
	if o == nil {
		return attest.RecipeKey(pkg, "")
	}
	return attest.RecipeKey(pkg, o.CID())
}

func opinionName(o *opinions.Opinion) string {
	if o == nil {
		return vocab.Vanilla
	}
	return o.Name
}

// Want offers a recipe (pkg with opinion op, nil for vanilla) to the
// scheduler, unless this node has a claim for it that still counts
// (builds.reverify_after); the recipe is followed from now on (offered
// again to re-verify it) until Drop.
func (s *Service) Want(pkg string, op *opinions.Opinion, reason string) {
	if !*s.cfg.Builds.Enabled {
		return
	}
	key := jobKey(pkg, op)
	job := buildJob{key: key, pkg: pkg, op: op, reason: reason}
	s.mu.Lock()
	s.wanted[key] = job
	s.mu.Unlock()
	switch s.sched.Want(sched.Recipe{Key: key, Job: job}) {
	case sched.Queued:
		s.metrics.Queue(s.sched.Waiting())
		s.log.Info("rebuild queued", "package", pkg, "opinion", opinionName(op), "reason", reason)
	case sched.Full:
		if s.queueFullLog.Allow() {
			s.log.Warn("rebuild queue full; dropping (raise builds.queue?)", "package", pkg, "opinion", opinionName(op), "queue", s.cfg.Builds.Queue)
		}
	}
}

// Drop: the recipe is no longer wanted here (unsubscribed, or the
// opinion's content changed).
func (s *Service) Drop(pkg string, op *opinions.Opinion) {
	key := jobKey(pkg, op)
	s.mu.Lock()
	delete(s.wanted, key)
	s.mu.Unlock()
	s.sched.Drop(key)
}

// Changed tells the scheduler that the claims of a recipe key changed
// (a claim arrived), or of any recipe (key "": who votes changed).
func (s *Service) Changed(key string) { s.sched.Changed(key) }

// Run runs the build workers (builds.concurrency) and the re-verification
// loop until ctx ends, then closes the builder. Nothing runs when builds
// are disabled.
func (s *Service) Run(ctx context.Context) {
	b := s.cfg.Builds
	if !*b.Enabled {
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < b.Concurrency; i++ {
		wg.Go(func() { s.worker(ctx) })
	}
	if b.MaxAge() > 0 {
		wg.Go(func() { s.reverify(ctx) })
	}
	wg.Wait()
	s.rb.close()
}

// worker builds what the scheduler picks: it announces its intent, waits
// for others' intents to arrive, builds unless enough builders are ahead
// of it, and renews the intent while the build runs (intents.go).
func (s *Service) worker(ctx context.Context) {
	for {
		r, err := s.sched.Next(ctx)
		if err != nil {
			return
		}
		s.metrics.Queue(s.sched.Waiting())
		job := r.Job.(buildJob)
		w, ok := s.work.claim(ctx, job)
		if ok && !s.sched.Confirm(job.key, w.in.Started) {
			s.log.Info("skipping a rebuild: enough trusted builders have built it or are building it", "package", job.pkg, "opinion", opinionName(job.op), "target", s.cfg.Builds.Target)
			s.metrics.Backoff()
			w.finish(false)
			ok = false
		}
		if !ok {
			s.sched.Release(r, ctx.Err() == nil)
			continue
		}
		w.start(ctx)
		built := s.runJob(ctx, job)
		w.finish(built)
		s.sched.Release(r, false)
	}
}

// runJob rebuilds and records the result; it reports whether a claim was
// signed.
func (s *Service) runJob(ctx context.Context, job buildJob) bool {
	o := job.op
	defer func() {
		s.mu.Lock()
		delete(s.running, job.key)
		s.mu.Unlock()
	}()
	run := newRunningBuild(job)
	s.mu.Lock()
	s.running[job.key] = run
	s.mu.Unlock()
	log := s.log.With("package", job.pkg, "opinion", opinionName(o))
	s.core.Emit(core.Event{Type: core.EventBuildStarted, Package: job.pkg, Opinion: opinionName(o)})
	b, err := s.rb.get(ctx)
	if err != nil {
		log.Error("cannot build: builder unavailable", "err", err)
		s.metrics.Build("error")
		return false
	}
	start := time.Now()
	log.Info("rebuilding", "reason", job.reason)
	req := builder.Request{Package: job.pkg, Opinion: o, Progress: run.line}
	var res *builder.Result
	if s.cfg.Twice {
		res, err = builder.BuildTwice(ctx, b, req)
	} else {
		res, err = b.Build(ctx, req)
	}
	switch {
	case errors.Is(err, builder.ErrNotApplicable) && res != nil:
		// Others should know the opinion does not apply: signed as failed.
		log.Warn("the opinion does not apply: signing a failed build", "reason", res.FailReason)
	case err != nil && ctx.Err() != nil:
		log.Info("rebuild interrupted: the daemon is stopping", "err", err)
		return false
	case err != nil:
		log.Error("rebuild refused or environment error", "err", err)
		s.metrics.Build("error")
		return false
	}
	s.metrics.Build(string(res.Status))
	s.metrics.BuildTime(time.Since(start))
	s.work.noteBuildTime(time.Since(start))
	rec, err := core.Record(ctx, s.core, res, o)
	if err != nil {
		log.Error("recording the build result", "err", err)
		return false
	}
	log.Info("rebuilt and published", "status", res.Status, "claim", rec.ID, "published", rec.Published, "seconds", int(time.Since(start).Seconds()), "artifacts", len(res.Artifacts))
	data, _ := json.Marshal(map[string]any{"status": res.Status, "artifacts": res.Artifacts})
	s.core.Emit(core.Event{Type: core.EventBuildFinished, Package: job.pkg, Opinion: opinionName(o), ClaimID: rec.ID, Data: data})
	return true
}

// reverify offers every followed recipe to the scheduler again from time
// to time, so recipes whose claims grew older than builds.reverify_after
// are rebuilt (re-verification).
func (s *Service) reverify(ctx context.Context) {
	maxAge := s.cfg.Builds.MaxAge()
	every := min(maxAge/8, time.Hour)
	t := time.NewTicker(max(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		jobs := make([]buildJob, 0, len(s.wanted))
		for _, j := range s.wanted {
			jobs = append(jobs, j)
		}
		s.mu.Unlock()
		for _, j := range jobs {
			s.Want(j.pkg, j.op, "re-verify: no claim of ours younger than "+maxAge.String())
		}
	}
}

// rebuilder makes the builder on first use.
type rebuilder struct {
	fixed   builder.Builder
	factory func(ctx context.Context, env builder.Env) (builder.Builder, error)
	env     builder.Env
	once    sync.Once
	err     error
	rb      *builder.Rebuilder
}

func (r *rebuilder) get(ctx context.Context) (builder.Builder, error) {
	if r.fixed != nil && r.factory == nil {
		return r.fixed, nil
	}
	if r.factory != nil {
		r.once.Do(func() { r.fixed, r.err = r.factory(ctx, r.env) })
		return r.fixed, r.err
	}
	r.once.Do(func() { r.rb, r.err = builder.Open(ctx, r.env) })
	return r.rb, r.err
}

func (r *rebuilder) close() {
	if r.rb != nil {
		_ = r.rb.Close()
	}
}
