package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

// A recipe's voters are the distinct keys with a claim about it that is
// not a mismatch report: what consensus.Rank counts to choose the recipe
// `info` and `verify` show. Before schema 5 ranking read every claim
// summary of the package (20,000 for hello on the 1M benchmark store); the
// voter list is one entry per key, packed, next to the recipe's summary.
//
// It lives in by_package, in chunks just after the recipe's summary key,
// so ingest dirties the page it rewrites for the summary anyway:
//
//	key   pkg \0 debianVersion \0 rk(32) | chunk(4, big endian)
//	value votersPerChunk entries (fewer in the last chunk), each
//	      fk (1 + 20 or 32 bytes) | first vote, unix seconds (8, big endian)
//
// An entry is appended once per (key, recipe), when the pair's head in
// by_builder first gets brVoted, so a claim costs O(1) whatever the
// recipe's number of voters. RecipeSummary.Voters counts the entries.
// "First vote" is the timestamp of the first voting claim this store
// stored for the pair (claims may arrive out of order).
const votersPerChunk = 32

// Voter is one key that voted for a recipe.
type Voter struct {
	Builder string    `json:"builder"`
	First   time.Time `json:"first"` // timestamp of its first voting claim stored here
}

// RecipeVoters is a recipe's summary with its voters.
type RecipeVoters struct {
	Recipe RecipeSummary
	Voters []Voter
}

func encodeVoter(fk []byte, ts time.Time) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(fk)+8), fk...), uint64(ts.Unix()))
}

// nextVoter splits the first entry off b.
func nextVoter(b []byte) (fk []byte, ts time.Time, rest []byte, err error) {
	if len(b) < 1 || (b[0] != 20 && b[0] != 32) || len(b) < 1+int(b[0])+8 {
		return nil, time.Time{}, nil, fmt.Errorf("%w: voter entry of %d bytes", ErrCorrupt, len(b))
	}
	n := 1 + int(b[0])
	return b[:n], time.Unix(int64(binary.BigEndian.Uint64(b[n:n+8])), 0).UTC(), b[n+8:], nil
}

// countVoters counts the entries of well-formed packed voters.
func countVoters(b []byte) int {
	n := 0
	for len(b) > 0 {
		_, _, rest, err := nextVoter(b)
		if err != nil {
			break
		}
		b, n = rest, n+1
	}
	return n
}

func voterChunkKey(pk []byte, chunk int) []byte {
	return binary.BigEndian.AppendUint32(append(make([]byte, 0, len(pk)+4), pk...), uint32(chunk))
}

// appendVoters appends packed entries to the voter list of the recipe with
// by_package key pk, which holds `before` entries.
func appendVoters(b *bolt.Bucket, pk []byte, before int, entries []byte) error {
	chunk, have := before/votersPerChunk, before%votersPerChunk
	var cur []byte
	if have > 0 {
		cur = bytes.Clone(b.Get(voterChunkKey(pk, chunk)))
		if n := countVoters(cur); n != have || len(cur) == 0 {
			return fmt.Errorf("%w: voter chunk %d of %x holds %d entries, the summary says %d", ErrCorrupt, chunk, pk, n, have)
		}
	}
	for len(entries) > 0 {
		_, _, rest, err := nextVoter(entries)
		if err != nil {
			return err
		}
		cur = append(cur, entries[:len(entries)-len(rest)]...)
		entries = rest
		if have++; have == votersPerChunk || len(entries) == 0 {
			if err := b.Put(voterChunkKey(pk, chunk), cur); err != nil {
				return err
			}
			chunk, have, cur = chunk+1, 0, nil
		}
	}
	return nil
}

// Keys of by_package: a recipe summary (pkg \0 ver \0 rk) or one of its
// voter chunks (the same | chunk).
const (
	pkgKeyOther = iota
	pkgKeySummary
	pkgKeyVoters
)

func packageKeyKind(k []byte) int {
	i := bytes.IndexByte(k, 0)
	if i < 0 {
		return pkgKeyOther
	}
	j := bytes.IndexByte(k[i+1:], 0)
	if j < 0 {
		return pkgKeyOther
	}
	switch len(k) - (i + 1 + j + 1) {
	case 32:
		return pkgKeySummary
	case 32 + 4:
		return pkgKeyVoters
	}
	return pkgKeyOther
}

// Voters returns every recipe of a source package (all Debian versions
// when debianVersion is "") with its voters, in one read transaction,
// ordered like ByPackage. It reads one packed entry per (key, recipe), not
// the claims: the input of consensus.Rank.
func (s *Store) Voters(pkg, debianVersion string) ([]RecipeVoters, error) {
	prefix := packagePrefix(pkg, debianVersion)
	var out []RecipeVoters
	fprs := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktByPackage).Cursor()
		var cur *RecipeVoters
		var curKey []byte
		var arena []Voter // one allocation for many recipes' voters
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			switch packageKeyKind(k) {
			case pkgKeySummary:
				r, err := decodeRecipeSummary(v)
				if err != nil {
					return err
				}
				// The arena holds the expected count; more entries (a
				// damaged count) grow the slice like any append, and the
				// check below reports the disagreement.
				want := min(r.Voters, 1<<16)
				if cap(arena)-len(arena) < want {
					arena = make([]Voter, 0, max(want, 1024))
				}
				out = append(out, RecipeVoters{Recipe: r, Voters: arena[len(arena) : len(arena) : len(arena)+want]})
				arena = arena[:len(arena)+want]
				cur, curKey = &out[len(out)-1], k
			case pkgKeyVoters:
				if cur == nil || !bytes.Equal(k[:len(k)-4], curKey) {
					return fmt.Errorf("%w: voter chunk %x without its recipe summary", ErrCorrupt, k)
				}
				for b := v; len(b) > 0; {
					fk, ts, rest, err := nextVoter(b)
					if err != nil {
						return err
					}
					fpr, ok := fprs[string(fk)]
					if !ok {
						fpr = fmtFpr(fk[1:])
						fprs[string(fk)] = fpr
					}
					cur.Voters = append(cur.Voters, Voter{Builder: fpr, First: ts})
					b = rest
				}
			}
		}
		for _, rv := range out {
			if len(rv.Voters) != rv.Recipe.Voters {
				return fmt.Errorf("%w: recipe %s has %d voter entries, its summary says %d", ErrCorrupt, rv.Recipe.RecipeID, len(rv.Voters), rv.Recipe.Voters)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("voters of %s: %w", pkg, err)
	}
	return out, nil
}

// migrateVoters builds the voter lists and sets brVoted on the heads of
// by_builder: schema 4 → 5. One recipe at a time, from its claim
// summaries in by_recipe; recipe summaries are rewritten in the binary
// form on the way.
func migrateVoters(tx *bolt.Tx) error {
	bp, br, bb := tx.Bucket(bktByPackage), tx.Bucket(bktByRecipe), tx.Bucket(bktByBuilder)
	type recipe struct {
		key []byte
		sum RecipeSummary
	}
	var recipes []recipe
	err := bp.ForEach(func(k, v []byte) error {
		if packageKeyKind(k) != pkgKeySummary {
			return nil
		}
		r, err := decodeRecipeSummary(v)
		if err != nil {
			return err
		}
		recipes = append(recipes, recipe{bytes.Clone(k), r})
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range recipes {
		rk := r.key[len(r.key)-32:]
		first := map[string]time.Time{}
		var order []string
		c := br.Cursor()
		for k, v := c.Seek(rk); k != nil && bytes.HasPrefix(k, rk); k, v = c.Next() {
			sc, err := decodeSummary(v)
			if err != nil {
				return err
			}
			if sc.Result == attest.ResultMismatch {
				continue
			}
			fk, ts := string(v[42:]), sc.Timestamp // decodeSummary checked the fingerprint key there
			if t, ok := first[fk]; !ok {
				order = append(order, fk)
				first[fk] = ts
			} else if ts.Before(t) {
				first[fk] = ts
			}
		}
		var entries []byte
		for _, fk := range order {
			entries = append(entries, encodeVoter([]byte(fk), first[fk])...)
			hk := cat([]byte(fk), rk)
			h, err := decodeBuilderRecipe(bb.Get(hk))
			if err != nil {
				return err
			}
			h.seen, h.voted = true, true
			if err := bb.Put(hk, h.encode()); err != nil {
				return err
			}
		}
		if err := appendVoters(bp, r.key, 0, entries); err != nil {
			return err
		}
		r.sum.Voters = len(order)
		if err := bp.Put(r.key, encodeRecipeSummary(&r.sum)); err != nil {
			return err
		}
	}
	return nil
}
