package sched

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
)

// world is the scheduler's view of the store and the clock, for tests.
type world struct {
	mu     sync.Mutex
	now    time.Time
	claims map[string]map[string]time.Time // recipe → builder → newest claim
	voting map[string]bool
}

func newWorld(voting ...string) *world {
	w := &world{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), claims: map[string]map[string]time.Time{}, voting: map[string]bool{}}
	for _, v := range voting {
		w.voting[v] = true
	}
	return w
}

func (w *world) clock() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.now }
func (w *world) advance(d time.Duration) {
	w.mu.Lock()
	w.now = w.now.Add(d)
	w.mu.Unlock()
}
func (w *world) claim(key, builder string, age time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.claims[key] == nil {
		w.claims[key] = map[string]time.Time{}
	}
	w.claims[key][builder] = w.now.Add(-age)
}
func (w *world) read(key string) (map[string]time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]time.Time{}
	for b, t := range w.claims[key] {
		out[b] = t
	}
	return out, nil
}
func (w *world) votes(f string) bool { w.mu.Lock(); defer w.mu.Unlock(); return w.voting[f] }

func (w *world) sched(self string, target int, maxAge time.Duration) *Scheduler {
	return New(Config{Self: self, Target: target, MaxAge: maxAge, Queue: 8}, w.read, w.votes, w.clock)
}

func (w *world) intent(builder, key string, started time.Time, ttl time.Duration, state string) *attest.Intent {
	pkg, cid := key, ""
	return &attest.Intent{Builder: builder, Package: pkg, OpinionCID: cid, State: state, Started: started, Issued: w.clock(), TTL: int64(ttl / time.Second)}
}

func next(t *testing.T, s *Scheduler, within time.Duration) (Recipe, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	r, err := s.Next(ctx)
	return r, err == nil
}

func rk(pkg string) string { return attest.RecipeKey(pkg, "") }

// TestPickOrder: what Next chooses and what it drops, table-driven.
func TestPickOrder(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		name    string
		setup   func(w *world)
		want    []string // recipes offered, all at once
		maxAge  time.Duration
		pick    string // "" = nothing to build
		waiting int    // left waiting after the pick
	}{
		{name: "furthest from target first", want: []string{"a", "b"},
			setup: func(w *world) { w.claim(rk("a"), "T1", 0) }, pick: "b", waiting: 1},
		{name: "covered by trusted claims is dropped", want: []string{"a"},
			setup: func(w *world) { w.claim(rk("a"), "T1", 0); w.claim(rk("a"), "T2", 0) }},
		{name: "unvetted claims do not cover", want: []string{"a"},
			setup: func(w *world) { w.claim(rk("a"), "U1", 0); w.claim(rk("a"), "U2", 0) }, pick: "a"},
		{name: "own claim: nothing to do", want: []string{"a"},
			setup: func(w *world) { w.claim(rk("a"), "SELF", 0) }},
		{name: "own claim too old: re-verify", want: []string{"a"}, maxAge: 30 * day,
			setup: func(w *world) { w.claim(rk("a"), "SELF", 31*day) }, pick: "a"},
		{name: "old trusted claims do not count", want: []string{"a"}, maxAge: 30 * day,
			setup: func(w *world) { w.claim(rk("a"), "T1", 40*day); w.claim(rk("a"), "T2", 40*day) }, pick: "a"},
		{name: "old claims count without max age", want: []string{"a"},
			setup: func(w *world) { w.claim(rk("a"), "T1", 400*day); w.claim(rk("a"), "T2", 400*day) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld("SELF", "T1", "T2")
			if c.setup != nil {
				c.setup(w)
			}
			s := w.sched("SELF", 2, c.maxAge)
			for _, k := range c.want {
				s.Want(Recipe{Key: rk(k)})
			}
			within := 50 * time.Millisecond // to see that nothing is picked
			if c.pick != "" {
				within = 5 * time.Second // a pick returns at once; a stall may delay it
			}
			r, ok := next(t, s, within)
			switch {
			case c.pick == "" && ok:
				t.Fatalf("picked %s, want nothing", r.Key)
			case c.pick != "" && (!ok || r.Key != rk(c.pick)):
				t.Fatalf("picked %q (%v), want %s", r.Key, ok, rk(c.pick))
			}
			if got := s.Waiting(); got != c.waiting {
				t.Errorf("waiting %d, want %d", got, c.waiting)
			}
		})
	}
}

// TestIntentsCoverUntilTheyEnd: intents of voting keys make a recipe wait;
// it is offered again when they expire or are withdrawn, never for
// intents of keys that do not vote.
func TestIntentsCoverUntilTheyEnd(t *testing.T) {
	w := newWorld("SELF", "T1", "T2")
	s := w.sched("SELF", 2, 0)
	start := w.clock()
	s.Observe(w.intent("T1", "a", start, 60*time.Second, attest.IntentBuilding), w.clock())
	s.Observe(w.intent("T2", "a", start, 10*time.Second, attest.IntentBuilding), w.clock())
	s.Observe(w.intent("U1", "b", start, 60*time.Second, attest.IntentBuilding), w.clock()) // unvetted: ignored
	s.Want(Recipe{Key: rk("a")})
	if r, ok := next(t, s, 50*time.Millisecond); ok {
		t.Fatalf("picked %s while two trusted builders build it", r.Key)
	}
	if n := len(s.Intents()); n != 2 {
		t.Fatalf("%d intents listed, want 2 (the unvetted one is not counted)", n)
	}
	w.advance(11 * time.Second) // T2's intent expired: "a" is one builder short
	s.Changed(rk("a"))
	if r, ok := next(t, s, time.Second); !ok || r.Key != rk("a") {
		t.Fatalf("after T2's intent expired: picked %q %v, want a", r.Key, ok)
	}
	s.Release(Recipe{Key: rk("a")}, true)
	s.Observe(w.intent("T2", "a", start, 60*time.Second, attest.IntentBuilding), w.clock())
	if _, ok := next(t, s, 50*time.Millisecond); ok {
		t.Fatal("picked while covered again")
	}
	w.advance(time.Second)
	s.Observe(w.intent("T1", "a", start, 60*time.Second, attest.IntentWithdrawn), w.clock())
	if r, ok := next(t, s, time.Second); !ok || r.Key != rk("a") {
		t.Fatalf("after T1 withdrew: picked %q %v, want a", r.Key, ok)
	}
	s.Release(Recipe{Key: rk("a")}, true)
	// A replay of T1's earlier "building" message does not revive it.
	replay := w.intent("T1", "a", start, 60*time.Second, attest.IntentBuilding)
	replay.Issued = replay.Issued.Add(-time.Second)
	s.Observe(replay, w.clock())
	if r, ok := next(t, s, time.Second); !ok || r.Key != rk("a") {
		t.Fatalf("a replayed intent covered the recipe again: %q %v", r.Key, ok)
	}
}

// TestNextWakesAtExpiry: a worker blocked in Next wakes by itself when the
// intent that covers a recipe expires (a builder that announced and died).
func TestNextWakesAtExpiry(t *testing.T) {
	w := newWorld("SELF", "T1")
	s := New(Config{Self: "SELF", Target: 1}, w.read, w.votes, nil) // real clock
	s.Observe(&attest.Intent{Builder: "T1", Package: "a", State: attest.IntentBuilding, Started: time.Now(), TTL: 1}, time.Now())
	s.Want(Recipe{Key: rk("a")})
	start := time.Now()
	r, ok := next(t, s, 5*time.Second)
	if !ok || r.Key != rk("a") {
		t.Fatalf("not offered after the intent expired")
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("offered after %s, before the 1 s intent expired", d)
	}
}

// TestConfirmRanks: after the settle wait, a node builds only if fewer than
// Target claims and earlier intents are ahead of it.
func TestConfirmRanks(t *testing.T) {
	w := newWorld("A", "B", "C", "D")
	t0 := w.clock()
	cases := []struct {
		name    string
		self    string
		mine    time.Time
		others  map[string]time.Time
		claimed []string
		want    bool
	}{
		{name: "alone", self: "B", mine: t0, want: true},
		{name: "one earlier, target 2", self: "B", mine: t0, others: map[string]time.Time{"A": t0.Add(-time.Second)}, want: true},
		{name: "two earlier", self: "C", mine: t0, others: map[string]time.Time{"A": t0.Add(-2 * time.Second), "B": t0.Add(-time.Second)}, want: false},
		{name: "two later", self: "A", mine: t0, others: map[string]time.Time{"B": t0.Add(time.Second), "C": t0.Add(time.Second)}, want: true},
		{name: "same second, lower fingerprints first", self: "C", mine: t0, others: map[string]time.Time{"A": t0, "B": t0}, want: false},
		{name: "same second, higher fingerprints after", self: "A", mine: t0, others: map[string]time.Time{"B": t0, "C": t0}, want: true},
		{name: "claims count", self: "D", mine: t0, claimed: []string{"A"}, others: map[string]time.Time{"B": t0.Add(-time.Second)}, want: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld("A", "B", "C", "D")
			s := w.sched(c.self, 2, 0)
			for b, st := range c.others {
				s.Observe(w.intent(b, "a", st, time.Minute, attest.IntentBuilding), w.clock())
			}
			for _, b := range c.claimed {
				w.claim(rk("a"), b, 0)
			}
			if got := s.Confirm(rk("a"), c.mine); got != c.want {
				t.Fatalf("Confirm = %v, want %v", got, c.want)
			}
		})
	}
}

func TestQueueBoundAndTaken(t *testing.T) {
	w := newWorld("SELF")
	s := w.sched("SELF", 3, 0) // queue 8
	for i := range 8 {
		if s.Want(Recipe{Key: rk(fmt.Sprintf("p%d", i))}) != Queued {
			t.Fatalf("recipe %d refused below the bound", i)
		}
	}
	if s.Want(Recipe{Key: rk("p8")}) != Full {
		t.Fatal("a 9th recipe was accepted by a queue of 8")
	}
	if s.Want(Recipe{Key: rk("p0")}) != AlreadyQueued {
		t.Fatal("wanting a queued recipe again was refused")
	}
	r, ok := next(t, s, time.Second)
	if !ok {
		t.Fatal("nothing offered")
	}
	if s.Want(r) != Busy {
		t.Fatal("a recipe being built here was queued again")
	}
	s.Release(r, false)
	if s.Want(r) != Queued {
		t.Fatal("a released recipe cannot be wanted again")
	}
}

// TestTiesSpreadNodes: with every recipe equally far from its target,
// different nodes start with different recipes.
func TestTiesSpreadNodes(t *testing.T) {
	w := newWorld()
	first := map[string]int{}
	for i := range 10 {
		s := w.sched(fmt.Sprintf("NODE%02d", i), 3, 0)
		for j := range 20 {
			s.Want(Recipe{Key: rk(fmt.Sprintf("p%02d", j))})
		}
		r, ok := next(t, s, time.Second)
		if !ok {
			t.Fatal("nothing offered")
		}
		first[r.Key]++
	}
	if len(first) < 5 {
		t.Fatalf("10 nodes started with only %d distinct recipes: %v", len(first), first)
	}
}

// TestWantSkipsCovered: a recipe covered by claims is not queued, so it
// cannot crowd out one that needs builders.
func TestWantSkipsCovered(t *testing.T) {
	w := newWorld("SELF", "T1", "T2")
	w.claim(rk("a"), "T1", 0)
	w.claim(rk("a"), "T2", 0)
	w.claim(rk("b"), "SELF", 0)
	s := w.sched("SELF", 2, 0)
	for _, k := range []string{"a", "b"} {
		if got := s.Want(Recipe{Key: rk(k)}); got != Covered {
			t.Errorf("Want(%s) = %v, want Covered", k, got)
		}
	}
	if got := s.Want(Recipe{Key: rk("c")}); got != Queued {
		t.Errorf("Want(c) = %v, want Queued", got)
	}
	if s.Waiting() != 1 {
		t.Errorf("waiting %d, want 1", s.Waiting())
	}
}

// TestDropWhileTaken: a recipe dropped while a worker holds it is not
// queued again when the worker backs off.
func TestDropWhileTaken(t *testing.T) {
	w := newWorld("SELF")
	s := w.sched("SELF", 2, 0)
	s.Want(Recipe{Key: rk("a")})
	r, ok := next(t, s, time.Second)
	if !ok {
		t.Fatal("nothing offered")
	}
	s.Drop(r.Key)
	s.Release(r, true)
	if s.Waiting() != 0 {
		t.Fatal("a dropped recipe came back after a back-off")
	}
	s.Want(r)
	r, _ = next(t, s, time.Second)
	s.Release(r, true)
	if s.Waiting() != 1 {
		t.Fatal("a recipe still wanted is not queued again after a back-off")
	}
}

// TestReplayAfterExpiry: the newest message of a builder is remembered
// until a replay of it could no longer verify (issued + TTL + skew), so
// replaying it after its TTL does not count the builder again.
func TestReplayAfterExpiry(t *testing.T) {
	w := newWorld("SELF", "T1")
	s := w.sched("SELF", 1, 0)
	in := w.intent("T1", "a", w.clock(), 60*time.Second, attest.IntentBuilding)
	s.Observe(in, w.clock())
	w.advance(61 * time.Second)
	s.Observe(in, w.clock()) // the same bytes, replayed by anyone
	s.Want(Recipe{Key: rk("a")})
	if r, ok := next(t, s, time.Second); !ok || r.Key != rk("a") {
		t.Fatal("a replayed expired intent covered the recipe")
	}
	if n := len(s.Intents()); n != 0 {
		t.Fatalf("%d intents listed after expiry", n)
	}
}

// TestIntentsPerBuilderBounded: one key's intents are capped.
func TestIntentsPerBuilderBounded(t *testing.T) {
	w := newWorld("SELF", "T1", "T2")
	s := w.sched("SELF", 1, 0)
	for i := range MaxIntentsPerBuilder + 50 {
		s.Observe(w.intent("T1", fmt.Sprintf("p%d", i), w.clock(), time.Hour, attest.IntentBuilding), w.clock())
	}
	s.Observe(w.intent("T2", "q", w.clock(), time.Hour, attest.IntentBuilding), w.clock())
	if n := len(s.Intents()); n != MaxIntentsPerBuilder+1 {
		t.Fatalf("%d intents kept, want %d for T1 and 1 for T2", n, MaxIntentsPerBuilder+1)
	}
}
