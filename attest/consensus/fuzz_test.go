package consensus

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// fuzzClaims decodes fuzz bytes into claims: 5 bytes a claim (key, result
// and variant, age in days, operator, peer). Key 0 has a nil statement.
func fuzzClaims(data []byte) ([]Claim, StaticTrust) {
	tr := StaticTrust{Levels: map[string]attest.Trust{}, Equivocators: map[string]bool{}, Operators: map[string]string{}}
	var claims []Claim
	for len(data) >= 5 {
		b := data[:5]
		data = data[5:]
		key := int(b[0] % 24)
		if key == 0 {
			claims = append(claims, Claim{ID: "nil"})
			continue
		}
		f := fpr(key)
		tr.Levels[f] = []attest.Trust{attest.TrustUnvetted, attest.TrustTrusted, attest.TrustTrusted, attest.TrustOwn}[key%4]
		switch key {
		case 23:
			tr.Levels[f] = attest.TrustDistrusted
		case 22:
			tr.Equivocators[f] = true
		}
		if b[3]%4 != 0 {
			tr.Operators[f] = fmt.Sprintf("op%d", b[3]%4)
		}
		sp := spec{key: key, age: time.Duration(b[2]) * 24 * time.Hour, peer: fmt.Sprintf("peer%d", b[4]%3)}
		switch r := b[1] % 8; {
		case r < 5:
			sp.variant = "A"
		case r == 5:
			sp.variant = "B"
		case r == 6:
			sp.result = attest.ResultFailed
		default:
			sp.result = attest.ResultUnreproducible
		}
		w := pure
		if b[1] >= 248 {
			w = world{purity: vocab.PurityPatches}
		}
		claims = append(claims, w.claim(sp))
	}
	return claims, tr
}

// FuzzEvaluate checks invariants on arbitrary claim sets: no panic, score
// in [0,10], dissent caps, order independence, and no SAFE verdict for a
// conflict or a hash outside the consensus.
func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 1, 0, 2, 0, 0, 2, 1, 3, 0, 0, 3, 2})                 // 3 trusted agree
	f.Add([]byte{1, 0, 0, 1, 0, 2, 5, 0, 2, 1})                                // 1 vs 1 conflict
	f.Add([]byte{1, 0, 0, 1, 0, 1, 5, 1, 1, 0, 2, 0, 0, 2, 1})                 // equivocation
	f.Add([]byte{4, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 0, 0, 0}) // unvetted, nil, distrusted
	f.Add([]byte{1, 6, 9, 1, 0, 2, 7, 9, 2, 1, 3, 0, 200, 3, 2, 22, 5, 0, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 5*2000 {
			return
		}
		claims, tr := fuzzClaims(data)
		opt := Options{Now: now}
		r := Evaluate(claims, tr, opt)
		if !(r.Score >= 0 && r.Score <= 10) {
			t.Fatalf("score %v out of range", r.Score)
		}
		if r.Consensus != nil && len(r.Dissenters) > 0 && r.Score > DissentCap {
			t.Fatalf("score %v above the dissent cap with %d dissenters", r.Score, len(r.Dissenters))
		}
		rev := slices.Clone(claims)
		slices.Reverse(rev)
		if r2 := Evaluate(rev, tr, opt); !reflect.DeepEqual(r, r2) {
			t.Fatalf("report depends on claim order:\n%v\n%v", r.Reasons, r2.Reasons)
		}
		for _, g := range r.Groups {
			for _, a := range g.Artifacts {
				for _, name := range []string{a.Name, ""} {
					v, why := r.VerdictFor(a.SHA256, name, opt)
					if len(why) == 0 {
						t.Fatal("verdict without reasons")
					}
					if v == Safe && (r.Conflict || r.Consensus == nil) {
						t.Fatalf("SAFE despite conflict %v / consensus %v", r.Conflict, r.Consensus != nil)
					}
					if v == Safe && g.ArtifactKey != r.Consensus.ArtifactKey {
						if _, ok := r.Consensus.nameOfHash(a.SHA256); !ok {
							t.Fatalf("SAFE for a hash outside the consensus")
						}
					}
				}
			}
		}
		_ = Bar(r.Score, 10)
	})
}
