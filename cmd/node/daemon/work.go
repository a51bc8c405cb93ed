package daemon

import (
	"strings"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/internal/builds"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/store"
)

// intentSettle is the build service's builds.Config.Settle (how long a
// node waits for others' intents after announcing its own). A variable so
// tests can shorten it; daemons read it only in New.
var intentSettle = builds.DefaultSettle

// observer is the core node's Observer: the claims and intents that enter
// the node reach the build service (and the subscriptions).
type observer struct{ d *Daemon }

var _ core.Observer = observer{}

// ClaimStored: a peer's claim may cover a waiting recipe, or name the
// opinion a subscription waits for. The node's own claims are the build
// workers' doing; imported ones are looked at by the next trust refresh
// (sched.Changed("")), not one by one: an import of many claims of a
// followed recipe would otherwise re-count the recipe per claim.
func (s observer) ClaimStored(c *attest.Claim, via, _ string) {
	if via != store.ViaGossip && via != store.ViaSync {
		return
	}
	st := c.Statement
	s.d.metrics.claims.WithLabelValues(string(st.Result)).Inc()
	s.d.builds.Changed(attest.RecipeKey(st.Package, st.Opinion.CID)) // the claim may cover a waiting recipe
	s.d.subs.ClaimArrived(c)
}

func (s observer) Intent(in *attest.Intent, from string, at time.Time) {
	if !s.d.ignoreIntents.Load() {
		s.d.builds.Intent(in, from, at)
	}
}

// RenewIntents re-publishes the intents of the builds running here (a peer
// joined: it has not seen them).
func (s observer) RenewIntents() { s.d.builds.RenewIntents() }

// recipeClaims is sched.Claims over the store: every builder with a claim
// for the recipe key (its newest claim's time). Red flags (mismatch
// reports) are not builds and do not count.
func recipeClaims(st *store.Store, key string) (map[string]time.Time, error) {
	pkg, cid, _ := strings.Cut(key, "/")
	if cid == vocab.Vanilla {
		cid = ""
	}
	rcs, err := st.ByPackage(pkg, "")
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
