package daemon

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/internal/core"
	"github.com/lebowski-dist/lebowski/cmd/internal/sched"
	"github.com/lebowski-dist/lebowski/p2p"
	"github.com/lebowski-dist/lebowski/store"
)

// Shared rebuild work (docs/SCHEDULER.md): before building, a node
// publishes a signed intent on p2p.IntentsTopic, waits intentSettle for
// the intents of nodes that chose the same recipe at the same moment, and
// builds only if fewer than builds.target trusted builders are ahead of
// it (fresh claims, earlier intents). While it builds it renews the intent
// every third of builds.intent_ttl; a build that ends without a claim
// withdraws it. Peers count an intent until its TTL runs out, so a node
// that dies mid-build is replaced after at most one TTL.

// intentSettle is how long a node waits after announcing an intent before
// it decides to build: long enough for gossip to bring the intents of
// nodes that decided at the same moment (tens of ms on a healthy mesh).
// A variable so tests can shorten it.
var intentSettle = 2 * time.Second

// observer is the core node's Observer: the claims and intents that enter
// the node reach the scheduler.
type observer struct{ d *Daemon }

var _ core.Observer = observer{}

// ClaimStored: a peer's claim may cover a waiting recipe, or name the
// opinion a subscription waits for. The node's own claims are the build
// workers' doing; imported ones are looked at by the next trust refresh
// (sched.Changed("")), not one by one: an import of many claims of a
// followed recipe would otherwise re-count the recipe per claim.
func (s observer) ClaimStored(c *attest.Claim, via, _ string) {
	if via == store.ViaGossip || via == store.ViaSync {
		s.d.claimArrived(c)
	}
}

func (s observer) Intent(in *attest.Intent, _ string, at time.Time) {
	if !s.d.ignoreIntents.Load() {
		s.d.sched.Observe(in, at)
	}
}

// RenewIntents re-publishes the intents of the builds running here (a peer
// joined: it has not seen them).
func (s observer) RenewIntents() {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	for w := range s.d.claims {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// recipeClaims is sched.Claims over the store: every builder with a claim
// for the recipe key (its newest claim's time). Red flags (mismatch
// reports) are not builds and do not count.
func (d *Daemon) recipeClaims(key string) (map[string]time.Time, error) {
	pkg, cid, _ := strings.Cut(key, "/")
	if cid == vocab.Vanilla {
		cid = ""
	}
	rcs, err := d.st.ByPackage(pkg, "")
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, rc := range rcs {
		if rc.Recipe.Opinion.CID != cid {
			continue
		}
		for _, c := range rc.Claims {
			if c.Result == attest.ResultMismatch {
				continue
			}
			if t, ok := out[c.Builder]; !ok || c.Timestamp.After(t) {
				out[c.Builder] = c.Timestamp
			}
		}
	}
	return out, nil
}

// noteBuildTime keeps a moving average of build durations (the "expect"
// of the next intents).
func (d *Daemon) noteBuildTime(took time.Duration) {
	secs := int64(took / time.Second)
	if old := d.buildSecs.Load(); old > 0 {
		secs = (3*old + secs) / 4
	}
	d.buildSecs.Store(max(secs, 1))
}

// workClaim is this node's intent for a recipe it builds.
type workClaim struct {
	d    *Daemon
	in   attest.Intent
	stop chan struct{}
	kick chan struct{} // renew now
	done sync.WaitGroup
}

// claimWork announces the intent to build job, waits for others' intents
// and asks the scheduler whether to go ahead. If not, the intent is
// withdrawn and ok is false; else the intent is renewed until finish.
func (d *Daemon) claimWork(ctx context.Context, job buildJob) (*workClaim, bool) {
	now := time.Now().UTC().Truncate(time.Millisecond) // as signed: peers rank by this
	cid := ""
	if job.op != nil {
		cid = job.op.CID()
	}
	w := &workClaim{d: d, stop: make(chan struct{}), kick: make(chan struct{}, 1), in: attest.Intent{Package: job.pkg, Opinion: opinionName(job.op), OpinionCID: cid,
		State: attest.IntentBuilding, Started: now, TTL: int64(d.cfg.Builds.IntentTTL / time.Second), Expect: d.buildSecs.Load()}}
	d.mu.Lock()
	d.claims[w] = struct{}{} // RenewIntents finds it
	d.mu.Unlock()
	w.publish(ctx)
	if len(d.net.Peers()) > 0 {
		t := time.NewTimer(d.settle)
		select {
		case <-ctx.Done():
			t.Stop()
			w.finish(false) // stopping: withdraw, so others need not wait for the TTL
			return nil, false
		case <-t.C:
		}
	}
	if !d.sched.Confirm(job.key, now) {
		d.log.Info("skipping a rebuild: enough trusted builders have built it or are building it", "package", job.pkg, "opinion", opinionName(job.op), "target", d.cfg.Builds.Target)
		d.metrics.backoffs.Inc()
		w.finish(false)
		return nil, false
	}
	w.done.Add(1)
	go w.renew(ctx)
	return w, true
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
	w.d.mu.Lock()
	delete(w.d.claims, w)
	w.d.mu.Unlock()
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
	d := w.d
	now := time.Now().UTC().Truncate(time.Millisecond)
	if next := w.in.Issued.Add(time.Millisecond); !w.in.Issued.IsZero() && now.Before(next) {
		now = next
	}
	w.in.Issued = now
	data, err := attest.SignIntent(d.id, w.in)
	if err == nil {
		err = d.net.PublishIntent(ctx, data)
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, p2p.ErrClosed) {
		d.log.Warn("publishing a build intent", "package", w.in.Package, "opinion", w.in.Opinion, "state", w.in.State, "err", err)
	}
}

// reverifyLoop offers every subscribed recipe to the scheduler again
// from time to time, so recipes whose claims grew older than
// builds.reverify_after are rebuilt (re-verification).
func (d *Daemon) reverifyLoop(ctx context.Context) {
	every := min(d.cfg.Builds.MaxAge()/8, time.Hour)
	t := time.NewTicker(max(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		subs := make([]subscription, 0, len(d.subs))
		for _, s := range d.subs {
			subs = append(subs, *s)
		}
		d.mu.Unlock()
		for _, s := range subs {
			if !s.waiting {
				d.maybeQueue(s.ref.Package, s.op, "re-verify: no claim of ours younger than "+d.cfg.Builds.MaxAge().String())
			}
		}
	}
}

// Intents lists the build intents of other builders this node counts.
func (d *Daemon) Intents() []sched.IntentView { return d.sched.Intents() }

// BuildIntents implements core.BuildDetails.
func (d *Daemon) BuildIntents() []core.BuildIntent {
	iv := d.sched.Intents()
	out := make([]core.BuildIntent, len(iv))
	for i, in := range iv {
		out[i] = core.BuildIntent{Recipe: in.Recipe, Builder: in.Builder, Started: in.Started, Expires: in.Expires, Expect: int64(in.Expect / time.Second)}
	}
	return out
}

// RunningBuilds implements core.BuildDetails.
func (d *Daemon) RunningBuilds() []core.RunningBuild {
	d.mu.Lock()
	runs := make([]*runningBuild, 0, len(d.running))
	for _, r := range d.running {
		runs = append(runs, r)
	}
	d.mu.Unlock()
	out := make([]core.RunningBuild, len(runs))
	for i, r := range runs {
		out[i] = r.view()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

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
