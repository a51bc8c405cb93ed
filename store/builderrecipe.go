package store

import (
	"bytes"
	"encoding/hex"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

// A "head" entry in by_builder answers, in one Get, the two questions ingest
// asks about a (builder, recipe) pair: has this builder claimed this recipe
// before (the recipe's builder count), and which artifacts did its first
// success claim name (the equivocation check). Before schema 3 ingest
// answered them by walking every earlier claim of the pair, which made a
// key's n-th claim for one recipe cost O(n) decodes.
//
// It lives in by_builder at the key fk | rk (no claim suffix), which sorts
// just before the pair's claim entries: the page ingest dirties for the
// new fk | rk | ck entry anyway, not one more random page per claim.
//
//	key   fk | rk
//	value [flags]                      claims, none of them a success
//	      [flags|1] | ck(36) | akey    the first success claim and its artifact key
//
// flags bit 1 (brVoted, schema 5): the pair is in the recipe's voter list
// (voters.go), i.e. one of its claims is not a mismatch report.
const (
	brNoSuccess = 0
	brSuccess   = 1
	brVoted     = 2
)

// builderRecipe is one decoded by_builder head value.
type builderRecipe struct {
	seen    bool   // the builder has claimed the recipe before
	voted   bool   // the builder is one of the recipe's voters
	success []byte // ck of its first success claim, nil if none
	akey    []byte // that claim's artifact key
}

func decodeBuilderRecipe(v []byte) (builderRecipe, error) {
	if v == nil {
		return builderRecipe{}, nil
	}
	if len(v) >= 1 && v[0]&^(brSuccess|brVoted) == 0 {
		br := builderRecipe{seen: true, voted: v[0]&brVoted != 0}
		switch {
		case v[0]&brSuccess == 0 && len(v) == 1:
			return br, nil
		case v[0]&brSuccess != 0 && len(v) >= 1+36:
			br.success, br.akey = v[1:37], v[37:]
			return br, nil
		}
	}
	return builderRecipe{}, fmt.Errorf("%w: by_builder head value of %d bytes", ErrCorrupt, len(v))
}

func (br builderRecipe) encode() []byte {
	flags := byte(brNoSuccess)
	if br.voted {
		flags |= brVoted
	}
	if br.success == nil {
		return []byte{flags}
	}
	return cat([]byte{flags | brSuccess}, br.success, br.akey)
}

func encodeBuilderRecipe(ck, akey []byte) []byte {
	return builderRecipe{success: ck, akey: akey}.encode()
}

// migrateBuilderRecipe adds the head entries to by_builder from its
// claim entries (fk|rk|ck) and by_recipe (the claims' summaries): schema
// 2 → 3.
func migrateBuilderRecipe(tx *bolt.Tx) error {
	bb := tx.Bucket(bktByBuilder)
	byRecipe := tx.Bucket(bktByRecipe)
	heads := map[string][]byte{}
	var order []string
	err := bb.ForEach(func(k, _ []byte) error {
		if len(k) < 1 {
			return fmt.Errorf("%w: empty by_builder key", ErrCorrupt)
		}
		fl := 1 + int(k[0])
		if len(k) <= fl+32 {
			return nil // a head already
		}
		pair, rk, ck := string(k[:fl+32]), k[fl:fl+32], k[fl+32:]
		cur, seen := heads[pair]
		if seen && cur[0] == brSuccess {
			return nil
		}
		if !seen {
			order = append(order, pair)
		}
		sum, err := decodeSummary(byRecipe.Get(cat(rk, ck)))
		if err != nil {
			return fmt.Errorf("by_recipe entry of %x: %w", ck, err)
		}
		v := encodeBuilderRecipe(nil, nil)
		if sum.Result == attest.ResultSuccess {
			akey, err := hex.DecodeString(sum.ArtifactKey)
			if err != nil {
				return fmt.Errorf("%w: artifact key of %x: %v", ErrCorrupt, ck, err)
			}
			v = encodeBuilderRecipe(bytes.Clone(ck), akey)
		}
		heads[pair] = v
		return nil
	})
	if err != nil {
		return err
	}
	for _, pair := range order {
		if err := bb.Put([]byte(pair), heads[pair]); err != nil {
			return err
		}
	}
	return nil
}

// isBuilderHead reports whether a by_builder key is a head (fk|rk).
func isBuilderHead(k []byte) bool { return len(k) >= 1 && len(k) == 1+int(k[0])+32 }
