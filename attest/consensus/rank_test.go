package consensus

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/lebowski-dist/lebowski/attest"
)

func TestRank(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	trust := trusting(1, 2, 3)
	trust.Equivocators[fpr(3)] = true
	unvetted := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fpr(100+i))
		}
		return out
	}
	tests := []struct {
		desc string
		in   []RecipeVotes
		want []string
	}{
		{"trusted votes beat a flood of unvetted keys", []RecipeVotes{
			{RecipeID: "flood", Builders: unvetted(1000), Newest: t0.Add(time.Hour)},
			{RecipeID: "honest", Builders: []string{fpr(1), fpr(2)}, Newest: t0},
		}, []string{"honest", "flood"}},
		{"an equivocator's vote does not count", []RecipeVotes{
			{RecipeID: "a", Builders: []string{fpr(3), fpr(3)}},
			{RecipeID: "b", Builders: []string{fpr(1)}},
		}, []string{"b", "a"}},
		{"repeated keys count once", []RecipeVotes{
			{RecipeID: "a", Builders: []string{fpr(1), fpr(1), fpr(1)}},
			{RecipeID: "b", Builders: []string{fpr(1), fpr(2)}},
		}, []string{"b", "a"}},
		{"equal trusted votes: more keys first", []RecipeVotes{
			{RecipeID: "a", Builders: []string{fpr(1)}},
			{RecipeID: "b", Builders: []string{fpr(2), fpr(100)}},
		}, []string{"b", "a"}},
		{"then the newest claim", []RecipeVotes{
			{RecipeID: "a", Builders: []string{fpr(1)}, Newest: t0},
			{RecipeID: "b", Builders: []string{fpr(2)}, Newest: t0.Add(time.Minute)},
		}, []string{"b", "a"}},
		{"then the smallest recipe ID", []RecipeVotes{
			{RecipeID: "b", Builders: []string{fpr(2)}, Newest: t0},
			{RecipeID: "a", Builders: []string{fpr(1)}, Newest: t0},
		}, []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			for range 5 { // the order never depends on the input's
				in := append([]RecipeVotes(nil), tc.in...)
				rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				Rank(in, trust)
				var got []string
				for _, r := range in {
					got = append(got, r.RecipeID)
				}
				assert.Equal(t, tc.want, got)
			}
		})
	}
	var none []RecipeVotes
	Rank(none, nil) // no panic on empty input or nil trust
	one := []RecipeVotes{{RecipeID: "x", Builders: []string{fpr(1)}}}
	Rank(one, StaticTrust{Levels: map[string]attest.Trust{fpr(1): attest.TrustDistrusted}})
	assert.Equal(t, "x", one[0].RecipeID)
}
