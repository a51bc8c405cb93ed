// Package sched decides which recipe this node rebuilds next, so that
// volunteers share the work: every subscribed recipe should reach a target
// number of independent trusted builders with as few builds as possible,
// none starves, and a builder that announced a build and vanished is
// replaced once its intent expires (docs/SCHEDULER.md).
//
// The scheduler is pure bookkeeping over a clock: the daemon tells it
// which recipes it wants built (Want), what others intend (Observe) and
// asks it what to build (Next, Confirm, Release). Claims are read through
// Claims — never while the scheduler's lock is held —, trust through
// votes; gossiping the intents is the daemon's job.
package sched

import (
	"context"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
)

// Recipe is one unit of rebuild work as the scheduler sees it.
type Recipe struct {
	Key string // attest.RecipeKey
	// Job is the caller's description of the work (opaque here).
	Job any
}

// Config tunes the scheduler (config.BuildConfig holds the operator's
// values).
type Config struct {
	Self   string        // this node's builder fingerprint
	Target int           // independent trusted builders wanted per recipe (≥ 1)
	MaxAge time.Duration // claims older than this do not count (re-verification); 0 = never too old
	Queue  int           // most recipes waiting (0 = unbounded)
}

// Claims reports, for a recipe key, every builder that signed a claim for
// it and the newest such claim's time.
type Claims func(key string) (map[string]time.Time, error)

// MaxIntentsPerBuilder bounds the intents kept for one builder key (a
// node runs at most 16 builds at once): a trusted key that signs intents
// for thousands of recipes cannot grow this node's memory.
const MaxIntentsPerBuilder = 64

// held is an intent as counted here.
type held struct {
	started time.Time
	issued  time.Time // of the newest message: older ones (replays) are ignored
	until   time.Time // counted until then (local clock)
	// keep is until when the entry is remembered: past until, up to the
	// last moment attest.VerifyIntent would still accept a replay of the
	// newest message (issued + TTL + skew), so a replay cannot bring a
	// dead builder back.
	keep   time.Time
	expect time.Duration
	gone   bool // withdrawn
}

func (h *held) live(now time.Time) bool { return !h.gone && now.Before(h.until) }

// Scheduler is safe for concurrent use.
type Scheduler struct {
	cfg    Config
	claims Claims
	votes  func(fpr string) bool
	now    func() time.Time

	mu        sync.Mutex
	wanted    map[string]Recipe           // waiting to be built here
	taken     map[string]bool             // chosen by a local worker, not finished; true: dropped meanwhile
	intents   map[string]map[string]*held // recipe key → builder → intent
	byBuilder map[string]int              // builder → entries in intents
	swept     time.Time                   // last sweep of forgotten intents
	wake      chan struct{}
}

// New returns a scheduler. votes says whether a builder key counts
// (trusted, certified or own); now is the clock (nil: time.Now).
func New(cfg Config, claims Claims, votes func(string) bool, now func() time.Time) *Scheduler {
	if cfg.Target < 1 {
		cfg.Target = 1
	}
	if now == nil {
		now = time.Now
	}
	return &Scheduler{cfg: cfg, claims: claims, votes: votes, now: now, wanted: map[string]Recipe{}, taken: map[string]bool{},
		intents: map[string]map[string]*held{}, byBuilder: map[string]int{}, wake: make(chan struct{}, 1)}
}

// WantResult says what Want did.
type WantResult int

const (
	Queued        WantResult = iota // newly waiting
	AlreadyQueued                   // was waiting already (its job is replaced)
	Busy                            // being built here now
	Full                            // the queue is full
	Covered                         // this node's fresh claim, or Target trusted ones, exist: nothing to do
)

// Want offers a recipe this node could build (or refreshes its job). A
// recipe already covered by claims is not queued, so covered
// subscriptions never crowd out the ones that need builders.
func (s *Scheduler) Want(r Recipe) WantResult {
	cl, err := s.claims(r.Key) // outside the lock: a store read
	if err == nil {
		if cv := s.claimCoverage(cl, s.now()); cv.own || cv.claimed >= s.cfg.Target {
			s.Drop(r.Key)
			return Covered
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.taken[r.Key]; ok {
		return Busy
	}
	_, had := s.wanted[r.Key]
	if !had && s.cfg.Queue > 0 && len(s.wanted) >= s.cfg.Queue {
		return Full
	}
	s.wanted[r.Key] = r
	s.poke()
	if had {
		return AlreadyQueued
	}
	return Queued
}

// Drop forgets a recipe this node no longer follows (unsubscribed, or its
// opinion changed); one being built now is not queued again if its
// worker backs off.
func (s *Scheduler) Drop(key string) {
	s.mu.Lock()
	delete(s.wanted, key)
	if _, ok := s.taken[key]; ok {
		s.taken[key] = true
	}
	s.mu.Unlock()
}

// Waiting is the number of recipes waiting.
func (s *Scheduler) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.wanted)
}

// Observe records a verified intent received at the local time at. Only
// intents of keys that vote are kept (another key's could make a recipe
// look covered), at most MaxIntentsPerBuilder per key; a message not newer
// than the builder's last one for the recipe (a replay) is ignored; a
// withdrawal ends the intent.
func (s *Scheduler) Observe(in *attest.Intent, at time.Time) {
	if in.Builder == s.cfg.Self || !s.votes(in.Builder) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(at)
	key := in.Key()
	m := s.intents[key]
	old := m[in.Builder]
	if old != nil && !in.Issued.After(old.issued) {
		return
	}
	if old == nil && s.byBuilder[in.Builder] >= MaxIntentsPerBuilder {
		return
	}
	if m == nil {
		m = map[string]*held{}
		s.intents[key] = m
	}
	if old == nil {
		s.byBuilder[in.Builder]++
	}
	h := &held{started: in.Started, issued: in.Issued, until: at.Add(in.TTLDuration()),
		expect: time.Duration(in.Expect) * time.Second, gone: in.State == attest.IntentWithdrawn}
	h.keep = h.until
	if replayable := in.Issued.Add(in.TTLDuration() + attest.DefaultSkew); replayable.After(h.keep) {
		h.keep = replayable
	}
	m[in.Builder] = h
	if h.gone {
		s.poke()
	}
}

// forgetLocked removes an intent entry. s.mu held.
func (s *Scheduler) forgetLocked(key, builder string) {
	m := s.intents[key]
	if _, ok := m[builder]; !ok {
		return
	}
	delete(m, builder)
	if len(m) == 0 {
		delete(s.intents, key)
	}
	if s.byBuilder[builder]--; s.byBuilder[builder] <= 0 {
		delete(s.byBuilder, builder)
	}
}

// sweepLocked forgets entries past their keep time, once a minute.
func (s *Scheduler) sweepLocked(now time.Time) {
	if now.Sub(s.swept) < time.Minute {
		return
	}
	s.swept = now
	for key, m := range s.intents {
		for b, h := range m {
			if !now.Before(h.keep) {
				s.forgetLocked(key, b)
			}
		}
	}
}

// Changed wakes a waiting Next: a claim arrived for a recipe key ("" =
// something else changed, e.g. which keys vote). A claim for a recipe
// this node does not wait for changes nothing and wakes nobody.
func (s *Scheduler) Changed(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.wanted[key]; ok || key == "" {
		s.poke()
	}
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// coverage is what counts toward a recipe's target.
type coverage struct {
	builders map[string]bool      // fresh claims and live intents of voting keys, self excluded
	claimed  int                  // of which fresh claims
	own      bool                 // this node has a fresh claim
	starts   map[string]time.Time // live intents not backed by a claim: builder → started
}

// claimCoverage counts fresh claims: those of voting keys, and this
// node's own.
func (s *Scheduler) claimCoverage(cl map[string]time.Time, now time.Time) coverage {
	cv := coverage{builders: map[string]bool{}, starts: map[string]time.Time{}}
	for b, ts := range cl {
		if s.cfg.MaxAge > 0 && now.Sub(ts) > s.cfg.MaxAge {
			continue
		}
		if b == s.cfg.Self {
			cv.own = true
			continue
		}
		if s.votes(b) {
			cv.builders[b] = true
			cv.claimed++
		}
	}
	return cv
}

// addIntentsLocked adds the live intents of voting keys to cv and forgets
// entries past their keep time. s.mu held.
func (s *Scheduler) addIntentsLocked(cv *coverage, key string, now time.Time) {
	for b, h := range s.intents[key] {
		if !now.Before(h.keep) {
			s.forgetLocked(key, b)
			continue
		}
		if !h.live(now) || !s.votes(b) || cv.builders[b] {
			continue
		}
		cv.builders[b] = true
		cv.starts[b] = h.started
	}
}

// readClaims reads the claims of keys, without the lock.
func (s *Scheduler) readClaims(keys []string) map[string]map[string]time.Time {
	out := make(map[string]map[string]time.Time, len(keys))
	for _, k := range keys {
		if cl, err := s.claims(k); err == nil {
			out[k] = cl
		}
	}
	return out
}

// Next blocks until there is a recipe for this node to build and returns
// it, marked taken: the recipe furthest from its target (fewest builders
// counted), among those this node has no fresh claim for and that are
// not covered. Ties go to a per-node pseudo-random order, so nodes that
// decide at the same moment mostly pick different recipes. Recipes
// covered by claims leave the queue; recipes covered only by intents wait
// until an intent expires or is withdrawn.
func (s *Scheduler) Next(ctx context.Context) (Recipe, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Recipe{}, err
		}
		r, wait, ok := s.pick()
		if ok {
			return r, nil
		}
		var t *time.Timer
		var timer <-chan time.Time
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return Recipe{}, ctx.Err()
		case <-s.wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// pick chooses a recipe, or says how long until an intent expires.
func (s *Scheduler) pick() (Recipe, time.Duration, bool) {
	s.mu.Lock()
	keys := make([]string, 0, len(s.wanted))
	for k := range s.wanted {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	claims := s.readClaims(keys)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	type cand struct {
		r    Recipe
		n    int
		rank uint64
	}
	var best *cand
	var wait time.Duration
	for _, key := range keys {
		r, ok := s.wanted[key]
		cl, read := claims[key]
		if !ok || !read {
			continue // taken or dropped meanwhile, or the store is failing (next wake)
		}
		cv := s.claimCoverage(cl, now)
		if cv.own || cv.claimed >= s.cfg.Target {
			delete(s.wanted, key) // built here, or enough trusted builders have
			continue
		}
		s.addIntentsLocked(&cv, key, now)
		if len(cv.builders) >= s.cfg.Target {
			if d := s.firstExpiryLocked(key, now); d > 0 && (wait == 0 || d < wait) {
				wait = d
			}
			continue
		}
		c := cand{r: r, n: len(cv.builders), rank: tieRank(s.cfg.Self, key)}
		if best == nil || c.n < best.n || (c.n == best.n && c.rank < best.rank) {
			best = &c
		}
	}
	if best == nil {
		return Recipe{}, wait, false
	}
	delete(s.wanted, best.r.Key)
	s.taken[best.r.Key] = false
	if len(s.wanted) > 0 {
		s.poke() // another idle worker may take the next one
	}
	return best.r, 0, true
}

// firstExpiryLocked is the time until the first live intent for key ends.
func (s *Scheduler) firstExpiryLocked(key string, now time.Time) time.Duration {
	var d time.Duration
	for _, h := range s.intents[key] {
		if left := h.until.Sub(now); h.live(now) && (d == 0 || left < d) {
			d = left
		}
	}
	return d
}

// tieRank orders recipes differently on every node.
func tieRank(self, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(self))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return h.Sum64()
}

// Confirm is asked after this node announced its intent for a taken
// recipe (started at started) and waited for others' intents to arrive:
// it says whether to build. It does not when fresh claims plus the
// intents that rank before this node's (started earlier; equal times by
// fingerprint) already reach the target, or when this node has a fresh
// claim already.
func (s *Scheduler) Confirm(key string, started time.Time) bool {
	cl, err := s.claims(key)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	cv := s.claimCoverage(cl, now)
	if cv.own {
		return false
	}
	s.addIntentsLocked(&cv, key, now)
	ahead := cv.claimed
	for b, st := range cv.starts {
		if st.Before(started) || (st.Equal(started) && b < s.cfg.Self) {
			ahead++
		}
	}
	return ahead < s.cfg.Target
}

// Release ends a taken recipe: with again (the worker backed off) it waits
// again, unless it was dropped meanwhile; without, it is forgotten (built,
// or failed in a way a retry would not fix until something changes).
func (s *Scheduler) Release(r Recipe, again bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropped := s.taken[r.Key]
	delete(s.taken, r.Key)
	if again && !dropped {
		s.wanted[r.Key] = r
	}
	s.poke()
}

// IntentView is one counted intent (status page, `lebowski status`).
type IntentView struct {
	Recipe  string        `json:"recipe"`
	Builder string        `json:"builder"`
	Started time.Time     `json:"started"`
	Expires time.Time     `json:"expires"`
	Expect  time.Duration `json:"expect_ns,omitempty"`
}

// Intents lists the live intents of other builders, by recipe then start.
func (s *Scheduler) Intents() []IntentView {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []IntentView
	for key, m := range s.intents {
		for b, h := range m {
			if h.live(now) {
				out = append(out, IntentView{Recipe: key, Builder: b, Started: h.started, Expires: h.until, Expect: h.expect})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Recipe != out[j].Recipe {
			return out[i].Recipe < out[j].Recipe
		}
		return out[i].Started.Before(out[j].Started)
	})
	return out
}
