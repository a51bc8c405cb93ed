package consensus

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Property tests: each runs propCases random claim sets from a fixed seed,
// so a failure is reproducible; the failing case's seed is in the message.
const propCases = 500

var variants = []string{"A", "A", "A", "B", "C"}

// randWorld builds a random claim set for one recipe: up to 30 keys of
// mixed trust levels and operators, each with 1–3 claims of any result
// (so some keys equivocate), plus a query (file hash and name).
type randCase struct {
	w      world
	claims []Claim
	trust  StaticTrust
	nextID int // first unused key number
	rng    *rand.Rand
}

func newRandCase(seed uint64) *randCase {
	rng := rand.New(rand.NewPCG(seed, 0x1eb0))
	rc := &randCase{rng: rng, trust: StaticTrust{Levels: map[string]attest.Trust{}, Equivocators: map[string]bool{}, Operators: map[string]string{}}}
	switch rng.IntN(5) {
	case 0:
		rc.w = world{vanilla: true}
	case 1:
		rc.w = world{purity: vocab.PurityConfigureOnly}
	case 2:
		rc.w = world{purity: vocab.PurityPatches}
	case 3:
		rc.w = world{} // undeclared
	default:
		rc.w = pure
	}
	nKeys := rng.IntN(31)
	for k := 1; k <= nKeys; k++ {
		switch x := rng.IntN(100); {
		case x < 50:
			rc.trust.Levels[fpr(k)] = attest.TrustTrusted
		case x < 55:
			rc.trust.Levels[fpr(k)] = attest.TrustOwn
		case x < 60:
			rc.trust.Levels[fpr(k)] = attest.TrustDistrusted
		}
		if rng.IntN(20) == 0 {
			rc.trust.Equivocators[fpr(k)] = true
		}
		if rng.IntN(3) > 0 {
			rc.trust.Operators[fpr(k)] = fmt.Sprintf("op%d", rng.IntN(6))
		}
		peer := ""
		if rng.IntN(2) == 0 {
			peer = fmt.Sprintf("12D3KooW%d", rng.IntN(8))
		}
		for range 1 + rng.IntN(3)*rng.IntN(2) {
			rc.claims = append(rc.claims, rc.w.claim(rc.randSpec(k, peer)))
		}
	}
	rc.nextID = nKeys + 1
	return rc
}

// randAge is up to 200 days; half the time in whole days, so that claims
// with equal timestamps (tie-breaks) are common.
func (rc *randCase) randAge() time.Duration {
	if rc.rng.IntN(2) == 0 {
		return time.Duration(rc.rng.IntN(200)) * 24 * time.Hour
	}
	return time.Duration(rc.rng.Int64N(int64(200 * 24 * time.Hour)))
}

func (rc *randCase) randSpec(key int, peer string) spec {
	sp := spec{key: key, peer: peer, age: rc.randAge(), variant: variants[rc.rng.IntN(len(variants))]}
	switch x := rc.rng.IntN(100); {
	case x < 12:
		sp.result = attest.ResultFailed
	case x < 20:
		sp.result = attest.ResultUnreproducible
	}
	return sp
}

// newKey registers a fresh key at level l with a random operator and peer.
func (rc *randCase) newKey(l attest.Trust) (int, string) {
	k := rc.nextID
	rc.nextID++
	if l != attest.TrustUnvetted {
		rc.trust.Levels[fpr(k)] = l
	}
	switch rc.rng.IntN(3) {
	case 0:
		rc.trust.Operators[fpr(k)] = fmt.Sprintf("op%d", rc.rng.IntN(8)) // existing or new operator
	case 1:
		rc.trust.Operators[fpr(k)] = fmt.Sprintf("newop%d", k)
	}
	peer := ""
	if rc.rng.IntN(2) == 0 {
		peer = fmt.Sprintf("12D3KooW%d", rc.rng.IntN(10))
	}
	return k, peer
}

// queries returns file hashes and names worth asking about in r.
func (rc *randCase) queries(r Report) [][2]string {
	qs := [][2]string{{debHash("A"), debName}, {debHash("B"), ""}, {sum("x"), debName}, {debHash("C"), "other.deb"}}
	for _, g := range r.Groups {
		for _, a := range g.Artifacts {
			qs = append(qs, [2]string{a.SHA256, a.Name}, [2]string{a.SHA256, ""})
		}
	}
	return qs
}

func (rc *randCase) eval(claims []Claim) Report {
	return Evaluate(claims, rc.trust, Options{Now: now})
}

func describe(r Report) string {
	return fmt.Sprintf("score %.1f conflict %v\n%s", r.Score, r.Conflict, strings.Join(r.Reasons, "\n"))
}

// Property 1: adding an agreeing trusted builder never lowers the score.
func TestPropertyAgreeingTrustedNeverLowers(t *testing.T) {
	for seed := range uint64(propCases) {
		rc := newRandCase(seed)
		before := rc.eval(rc.claims)
		for _, level := range []attest.Trust{attest.TrustTrusted, attest.TrustOwn} {
			k, peer := rc.newKey(level)
			sp := spec{key: k, peer: peer, age: rc.randAge()}
			switch {
			case before.Consensus != nil:
				sp.variant = variantOf(before.Consensus)
			case len(before.Groups) > 0 && rc.rng.IntN(2) == 0:
				sp.variant = variantOf(&before.Groups[rc.rng.IntN(len(before.Groups))])
			default:
				sp.variant = fmt.Sprintf("new%d", k)
			}
			claims := with(rc.claims, rc.w.claim(sp))
			after := rc.eval(claims)
			if after.Score < before.Score {
				t.Fatalf("seed %d: agreeing trusted key lowered the score %.1f → %.1f\nbefore: %s\nafter: %s", seed, before.Score, after.Score, describe(before), describe(after))
			}
			rc.claims, before = claims, after
		}
	}
}

// Property 2: adding a trusted dissent never raises the score. With a
// consensus a dissent is a success with other artifacts or a signed
// "unreproducible"; without one only "unreproducible" dissents (a first
// trusted success would be agreement, not dissent).
func TestPropertyTrustedDissentNeverRaises(t *testing.T) {
	for seed := range uint64(propCases) {
		rc := newRandCase(seed)
		before := rc.eval(rc.claims)
		for range 3 {
			k, peer := rc.newKey(attest.TrustTrusted)
			sp := spec{key: k, peer: peer, age: rc.randAge(), result: attest.ResultUnreproducible}
			if before.Consensus != nil && rc.rng.IntN(3) > 0 {
				sp.result = ""
				sp.variant = fmt.Sprintf("dissent%d", k)
				if others := before.Groups[1:]; len(others) > 0 && rc.rng.IntN(2) == 0 {
					sp.variant = variantOf(&others[rc.rng.IntN(len(others))])
				}
			}
			claims := with(rc.claims, rc.w.claim(sp))
			after := rc.eval(claims)
			if after.Score > before.Score {
				t.Fatalf("seed %d: trusted dissent raised the score %.1f → %.1f\nbefore: %s\nafter: %s", seed, before.Score, after.Score, describe(before), describe(after))
			}
			if before.Consensus != nil && after.Score > DissentCap {
				t.Fatalf("seed %d: score %.1f above the dissent cap", seed, after.Score)
			}
			rc.claims, before = claims, after
		}
	}
}

// Property 2b: adding a trusted "failed" never raises the score either.
func TestPropertyTrustedFailureNeverRaises(t *testing.T) {
	for seed := range uint64(propCases) {
		rc := newRandCase(seed)
		before := rc.eval(rc.claims)
		k, peer := rc.newKey(attest.TrustTrusted)
		after := rc.eval(with(rc.claims, rc.w.claim(spec{key: k, peer: peer, age: rc.randAge(), result: attest.ResultFailed})))
		if after.Score > before.Score {
			t.Fatalf("seed %d: trusted failure raised the score %.1f → %.1f", seed, before.Score, after.Score)
		}
	}
}

// Property 3: any number (0..1000) of unvetted keys cannot turn a non-SAFE
// verdict into SAFE. In fact they change neither the score nor any verdict.
func TestPropertyUnvettedCannotMakeSafe(t *testing.T) {
	other := world{purity: vocab.PurityPatches, cid: "bafyother"}
	for seed := range uint64(propCases) {
		rc := newRandCase(seed)
		before := rc.eval(rc.claims)
		// Mostly small floods, every 10th case a large one (up to 1000 keys).
		n := rc.rng.IntN(40)
		if seed%10 == 0 {
			n = rc.rng.IntN(1001)
		}
		claims := with(rc.claims)
		for range n {
			k, peer := rc.newKey(attest.TrustUnvetted)
			sp := rc.randSpec(k, peer)
			if rc.rng.IntN(2) == 0 {
				sp.variant = "EVIL" // a coordinated Sybil hash
			}
			w := rc.w
			if rc.rng.IntN(20) == 0 {
				w = other // floods of another recipe must not switch the recipe
			}
			claims = append(claims, w.claim(sp))
			if rc.rng.IntN(10) == 0 { // some unvetted keys equivocate
				sp.variant, sp.result = "EVIL2", ""
				claims = append(claims, w.claim(sp))
			}
		}
		after := rc.eval(claims)
		if after.Score != before.Score || after.Conflict != before.Conflict {
			t.Fatalf("seed %d: %d unvetted keys changed score %.1f → %.1f / conflict %v → %v", seed, n, before.Score, after.Score, before.Conflict, after.Conflict)
		}
		queries := append(rc.queries(before), [2]string{debHash("EVIL"), debName}, [2]string{debHash("EVIL"), ""})
		for _, opt := range []Options{{}, {Threshold: 0.1, MinTrusted: 1}} {
			for _, q := range queries {
				v0, _ := before.VerdictFor(q[0], q[1], opt)
				v1, why := after.VerdictFor(q[0], q[1], opt)
				if v0 != Safe && v1 == Safe {
					t.Fatalf("seed %d: %d unvetted keys turned %s into SAFE for %v\n%s", seed, n, v0, q, strings.Join(why, "\n"))
				}
				if v0 != v1 {
					t.Fatalf("seed %d: %d unvetted keys changed the verdict %s → %s for %v", seed, n, v0, v1, q)
				}
			}
		}
	}
}

// Property 4: equivocating keys count zero — the report with their claims
// equals the report without them (except the equivocator list, reasons and
// metadata), whether the key is detected or flagged by the TrustSource.
func TestPropertyEquivocatorsCountZero(t *testing.T) {
	for seed := range uint64(propCases) {
		rc := newRandCase(seed)
		without := rc.eval(rc.claims)
		claims := with(rc.claims)
		var added []string
		for range 1 + rc.rng.IntN(3) {
			level := []attest.Trust{attest.TrustTrusted, attest.TrustOwn, attest.TrustUnvetted}[rc.rng.IntN(3)]
			k, peer := rc.newKey(level)
			added = append(added, fpr(k))
			if rc.rng.IntN(2) == 0 {
				// Detected: two success claims with different artifacts, plus noise.
				a := variants[rc.rng.IntN(len(variants))]
				claims = append(claims,
					rc.w.claim(spec{key: k, peer: peer, variant: a, age: rc.randAge()}),
					rc.w.claim(spec{key: k, peer: peer, variant: a + "x", age: rc.randAge()}))
				if rc.rng.IntN(2) == 0 {
					claims = append(claims, rc.w.claim(rc.randSpec(k, peer)))
				}
			} else {
				// Flagged by the TrustSource (proof held for another recipe): any claims.
				rc.trust.Equivocators[fpr(k)] = true
				for range 1 + rc.rng.IntN(2) {
					claims = append(claims, rc.w.claim(rc.randSpec(k, peer)))
				}
			}
		}
		with := rc.eval(claims)
		for _, f := range added {
			if !contains(with.Equivocators, f) {
				t.Fatalf("seed %d: %s not listed as equivocator", seed, f)
			}
		}
		if with.Score != without.Score || !reflect.DeepEqual(with.Components, without.Components) ||
			with.Conflict != without.Conflict || !reflect.DeepEqual(with.Groups, without.Groups) ||
			!reflect.DeepEqual(with.Dissenters, without.Dissenters) || !reflect.DeepEqual(with.Failed, without.Failed) ||
			!reflect.DeepEqual(with.Unreproducible, without.Unreproducible) || with.Purity != without.Purity {
			t.Fatalf("seed %d: equivocators changed the report\nwithout: %s\nwith: %s", seed, describe(without), describe(with))
		}
		for _, q := range rc.queries(with) {
			v0, _ := without.VerdictFor(q[0], q[1], Options{})
			v1, _ := with.VerdictFor(q[0], q[1], Options{})
			if v0 != v1 {
				t.Fatalf("seed %d: equivocators changed the verdict %s → %s for %v", seed, v0, v1, q)
			}
		}
	}
}

// Property 5: the score is within [0,10] and the whole report does not
// depend on the order of the claims.
func TestPropertyBoundedAndOrderIndependent(t *testing.T) {
	for seed := range uint64(propCases) {
		rc := newRandCase(seed)
		r := rc.eval(rc.claims)
		if r.Score < 0 || r.Score > 10 || r.Score != r.Score {
			t.Fatalf("seed %d: score %v out of [0,10]", seed, r.Score)
		}
		for range 3 {
			shuffled := with(rc.claims)
			rc.rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			s := rc.eval(shuffled)
			if !reflect.DeepEqual(r, s) {
				t.Fatalf("seed %d: report depends on claim order\n%s\n---\n%s", seed, describe(r), describe(s))
			}
		}
	}
}

// variantOf recovers the test variant of a group from its .deb hash.
func variantOf(g *Group) string {
	h, _ := g.hashFor(debName)
	v, ok := variantByHash[h]
	if !ok {
		panic("unknown variant " + h)
	}
	return v
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
