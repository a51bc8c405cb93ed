package builds

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// Shared rebuild work (docs/SCHEDULER.md): before building, a node
// publishes a signed intent on the intents topic, waits Config.Settle for
// the intents of nodes that chose the same recipe at the same moment, and
// builds only if fewer than builds.target trusted builders are ahead of
// it (fresh claims, earlier intents). While it builds it renews the intent
// every third of builds.intent_ttl; a build that ends without a claim
// withdraws it. Peers count an intent until its TTL runs out, so a node
// that dies mid-build is replaced after at most one TTL.

// Intent implements core.Observer's Intent: a verified build intent of
// another builder reaches the scheduler.
func (s *Service) Intent(in *attest.Intent, _ string, at time.Time) { s.sched.Observe(in, at) }

// RenewIntents implements core.Observer's RenewIntents: it re-publishes
// the intents of the builds running here (a peer joined: it has not seen
// them).
func (s *Service) RenewIntents() { s.work.renewAll() }

// work is this node's own intents.
type work struct {
	id        *attest.Identity
	net       Publisher
	log       *slog.Logger
	settle    time.Duration
	ttl       time.Duration
	buildSecs atomic.Int64 // moving average of build durations, announced as what to expect

	mu     sync.Mutex
	claims map[*workClaim]struct{} // own intents being renewed
}

// noteBuildTime keeps a moving average of build durations (the "expect"
// of the next intents).
func (wk *work) noteBuildTime(took time.Duration) {
	secs := int64(took / time.Second)
	if old := wk.buildSecs.Load(); old > 0 {
		secs = (3*old + secs) / 4
	}
	wk.buildSecs.Store(max(secs, 1))
}

func (wk *work) renewAll() {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	for w := range wk.claims {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// workClaim is this node's intent for a recipe it builds.
type workClaim struct {
	wk   *work
	in   attest.Intent
	stop chan struct{}
	kick chan struct{} // renew now
	done sync.WaitGroup
}

// claim announces the intent to build job and waits for others' intents
// (when anyone may hear it); the caller then asks the scheduler whether
// to go ahead (start, or finish(false) to withdraw). ok is false when ctx
// ended while waiting: the intent is withdrawn.
func (wk *work) claim(ctx context.Context, job buildJob) (*workClaim, bool) {
	now := time.Now().UTC().Truncate(time.Millisecond) // as signed: peers rank by this
	cid := ""
	if job.op != nil {
		cid = job.op.CID()
	}
	w := &workClaim{wk: wk, stop: make(chan struct{}), kick: make(chan struct{}, 1), in: attest.Intent{Package: job.pkg, Opinion: opinionName(job.op), OpinionCID: cid,
		State: attest.IntentBuilding, Started: now, TTL: int64(wk.ttl / time.Second), Expect: wk.buildSecs.Load()}}
	wk.mu.Lock()
	wk.claims[w] = struct{}{} // RenewIntents finds it
	wk.mu.Unlock()
	w.publish(ctx)
	if wk.net.HasPeers() {
		t := time.NewTimer(wk.settle)
		select {
		case <-ctx.Done():
			t.Stop()
			w.finish(false) // stopping: withdraw, so others need not wait for the TTL
			return nil, false
		case <-t.C:
		}
	}
	return w, true
}

// start renews the intent until finish.
func (w *workClaim) start(ctx context.Context) {
	w.done.Add(1)
	go w.renew(ctx)
}

// renew re-publishes the intent every third of its TTL until finish.
func (w *workClaim) renew(ctx context.Context) {
	defer w.done.Done()
	t := time.NewTicker(time.Duration(w.in.TTL) * time.Second / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		case <-t.C:
		case <-w.kick:
		}
		w.publish(ctx)
	}
}

// finish stops the renewals; a build that signed no claim withdraws the
// intent so that another builder takes the recipe now, not after the TTL.
func (w *workClaim) finish(built bool) {
	w.wk.mu.Lock()
	delete(w.wk.claims, w)
	w.wk.mu.Unlock()
	close(w.stop)
	w.done.Wait()
	if !built {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.withdraw(ctx)
	}
}

func (w *workClaim) withdraw(ctx context.Context) {
	w.in.State = attest.IntentWithdrawn
	w.publish(ctx)
}

// publish signs and publishes the intent as it is now. Issued grows by at
// least a millisecond each time (signed times are cut to milliseconds):
// peers ignore a message not newer than the last, so a withdrawal right
// after a renewal must still count.
func (w *workClaim) publish(ctx context.Context) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	if next := w.in.Issued.Add(time.Millisecond); !w.in.Issued.IsZero() && now.Before(next) {
		now = next
	}
	w.in.Issued = now
	data, err := attest.SignIntent(w.wk.id, w.in)
	if err == nil {
		err = w.wk.net.PublishIntent(ctx, data)
	}
	if err != nil && ctx.Err() == nil {
		w.wk.log.Warn("publishing a build intent", "package", w.in.Package, "opinion", w.in.Opinion, "state", w.in.State, "err", err)
	}
}

// Queued implements core.BuildQueue.
func (s *Service) Queued() int { return s.sched.Waiting() }

// Running implements core.BuildQueue.
func (s *Service) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.running))
	for k := range s.running {
		out = append(out, k)
	}
	return out
}

// BuildIntents implements core.BuildDetails: the build intents of other
// builders this node counts.
func (s *Service) BuildIntents() []core.BuildIntent {
	iv := s.sched.Intents()
	out := make([]core.BuildIntent, len(iv))
	for i, in := range iv {
		out[i] = core.BuildIntent{Recipe: in.Recipe, Builder: in.Builder, Started: in.Started, Expires: in.Expires, Expect: int64(in.Expect / time.Second)}
	}
	return out
}

// RunningBuilds implements core.BuildDetails.
func (s *Service) RunningBuilds() []core.RunningBuild {
	s.mu.Lock()
	runs := make([]*runningBuild, 0, len(s.running))
	for _, r := range s.running {
		runs = append(runs, r)
	}
	s.mu.Unlock()
	out := make([]core.RunningBuild, len(runs))
	for i, r := range runs {
		out[i] = r.view()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

var (
	_ core.BuildQueue   = (*Service)(nil)
	_ core.BuildDetails = (*Service)(nil)
)

// runningBuild is a rebuild in progress and the tail of its log.
type runningBuild struct {
	info core.RunningBuild
	mu   sync.Mutex
	tail []string // ring of core.MaxLogTail lines
	next int
}

func newRunningBuild(job buildJob) *runningBuild {
	return &runningBuild{info: core.RunningBuild{Recipe: job.key, Package: job.pkg, Opinion: opinionName(job.op), Started: time.Now(), Reason: job.reason}}
}

// line is builder.Request.Progress: it keeps the last lines, each cut to
// core.MaxLogLine characters (valid UTF-8).
func (r *runningBuild) line(l string) {
	l = core.LogLine(l)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.tail) < core.MaxLogTail {
		r.tail = append(r.tail, l)
		return
	}
	r.tail[r.next] = l
	r.next = (r.next + 1) % core.MaxLogTail
}

func (r *runningBuild) view() core.RunningBuild {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.info
	v.LogTail = append(append(make([]string, 0, len(r.tail)), r.tail[r.next:]...), r.tail[:r.next]...)
	return v
}
