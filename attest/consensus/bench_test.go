package consensus

import (
	"fmt"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
)

// benchClaims returns n claims for one recipe: 60% of keys trusted across
// 8 operators, 90% agree, 5% another hash, 5% failed or unreproducible.
func benchClaims(n int) ([]Claim, StaticTrust) {
	tr := StaticTrust{Levels: map[string]attest.Trust{}, Operators: map[string]string{}}
	claims := make([]Claim, 0, n)
	for i := 1; i <= n; i++ {
		if i%5 < 3 {
			tr.Levels[fpr(i)] = attest.TrustTrusted
		}
		tr.Operators[fpr(i)] = fmt.Sprintf("op%d", i%8)
		sp := spec{key: i, age: time.Duration(i) * time.Hour}
		switch i % 20 {
		case 7:
			sp.variant = "B"
		case 13:
			sp.result = attest.ResultFailed
		}
		claims = append(claims, pure.claim(sp))
	}
	return claims, tr
}

func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		claims, tr := benchClaims(n)
		b.Run(fmt.Sprintf("claims=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Evaluate(claims, tr, Options{Now: now})
			}
		})
	}
}

func BenchmarkVerdictFor(b *testing.B) {
	claims, tr := benchClaims(1000)
	r := Evaluate(claims, tr, Options{Now: now})
	b.ReportAllocs()
	for b.Loop() {
		r.VerdictFor(debHash("A"), debName, Options{})
	}
}
