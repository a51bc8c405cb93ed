package store

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

// A schema-2 file (before the by_builder heads) migrates: equivocation against
// a claim stored before the migration is still found, and a builder's
// second claim for a recipe does not count it twice.
func TestBuilderRecipeMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := mustOpenPath(t, path)
	keys := testKeys(t, 2)
	a, b := keys[0], keys[1]
	failedA := mustSign(t, a, spec{result: attest.ResultFailed})
	goodA := mustSign(t, a, spec{ts: 1})
	failedB := mustSign(t, b, spec{result: attest.ResultFailed})
	mustIngest(t, s, failedA, goodA, failedB)
	require.NoError(t, s.Close())

	downgrade(t, path, 2, func(tx *bolt.Tx) error {
		bb := tx.Bucket(bktByBuilder)
		var heads [][]byte
		require.NoError(t, bb.ForEach(func(k, _ []byte) error {
			if isBuilderHead(k) {
				heads = append(heads, bytes.Clone(k))
			}
			return nil
		}))
		require.Len(t, heads, 2, "one head per (builder, recipe)")
		for _, k := range heads {
			if err := bb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})

	s = mustOpenPath(t, path)
	res := mustIngest(t, s, mustSign(t, a, spec{ts: 2, variant: 1}), mustSign(t, b, spec{ts: 3}))
	assert.Equal(t, []Status{StatusEquivocation, StatusNew}, statuses(res))
	assert.Equal(t, goodA.ID, res[0].Proof.ClaimA, "proof names the claim stored before the migration")
	recs, err := s.Recipes("hello")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, 2, recs[0].Builders, "two builders, however many claims each")
	assert.Equal(t, 5, recs[0].Claims)
}

// The first success claim is what later ones are compared with: a failed
// claim before it does not hide an equivocation, and agreeing claims stay
// new.
func TestBuilderRecipeFirstSuccess(t *testing.T) {
	s := mustOpenStore(t)
	a := testKeys(t, 1)[0]
	res := mustIngest(t, s,
		mustSign(t, a, spec{result: attest.ResultFailed}),
		mustSign(t, a, spec{ts: 1}),
		mustSign(t, a, spec{ts: 2}),
		mustSign(t, a, spec{ts: 3, result: attest.ResultUnreproducible}),
		mustSign(t, a, spec{ts: 4, variant: 7}),
	)
	assert.Equal(t, []Status{StatusNew, StatusNew, StatusNew, StatusNew, StatusEquivocation}, statuses(res))
}

// BenchmarkIngestOneKeyOneRecipe measures the cost of one more claim when
// one key already holds n claims for the same recipe (issue 12: before
// the by_builder heads it grew linearly with n). Reported: ns per claim of the
// last 1,000 ingested on top of n.
func BenchmarkIngestOneKeyOneRecipe(b *testing.B) {
	id := testKeys(b, 1)[0]
	sign := func(from, count int) []*attest.Claim {
		out := make([]*attest.Claim, count)
		for i := range out {
			out[i] = mustSign(b, id, spec{ts: from + i})
		}
		return out
	}
	for _, n := range []int{1, 1000, 5000, 50000} {
		b.Run(fmt.Sprintf("held=%d", n), func(b *testing.B) {
			s := mustOpenStore(b, WithNoSync())
			prefill := sign(0, n)
			for i := 0; i < len(prefill); i += 1000 {
				if _, err := s.Ingest(context.Background(), prefill[i:min(i+1000, len(prefill))]...); err != nil {
					b.Fatal(err)
				}
			}
			more := sign(n, 1000)
			b.ResetTimer()
			var took time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				for _, c := range more {
					if _, err := s.Ingest(context.Background(), c); err != nil {
						b.Fatal(err)
					}
				}
				took += time.Since(start)
				b.StopTimer()
				more = sign(n+(i+1)*1000, 1000)
				b.StartTimer()
			}
			b.ReportMetric(float64(took.Nanoseconds())/float64(b.N*1000), "ns/claim")
		})
	}
}
