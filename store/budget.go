package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// ErrOverBudget is wrapped by the Err of a claim refused because its key
// (or the whole store) is over budget (StatusOverBudget).
var ErrOverBudget = errors.New("over budget")

// Budget bounds what keys that do not vote (unknown, unvetted) can make the
// store hold: anyone can make fresh keys, so without it a flood of valid
// claims fills the disk. Keys that vote (own, trusted, certified, the
// config's trusted_keys) are never refused and nothing is ever evicted: a
// budget only stops new claims. Zero fields take the defaults
// (DefaultBudget); a negative field disables that limit.
type Budget struct {
	// ClaimsPerKey, RecipesPerKey and BytesPerKey bound one non-voting
	// key's claims, distinct recipes and envelope bytes.
	ClaimsPerKey  int64 `yaml:"claims_per_key"`
	RecipesPerKey int64 `yaml:"recipes_per_key"`
	BytesPerKey   int64 `yaml:"bytes_per_key"`
	// PoolBytes and PoolKeys bound what all keys that do not vote hold
	// together (the pool): bytes of stored claims, and keys with stored
	// claims. Fresh keys cost nothing to make, so the per-key limits
	// alone do not bound them.
	PoolBytes int64 `yaml:"pool_bytes"`
	PoolKeys  int64 `yaml:"pool_keys"`
	// StoreBytes is the database size after which claims of non-voting
	// keys are refused while the node keeps serving and storing the
	// claims of keys that vote.
	StoreBytes int64 `yaml:"store_bytes"`
}

// DefaultBudget: an honest builder makes one claim per recipe it rebuilds
// (a few per day); 10,000 claims, 5,000 recipes and 32 MiB per key and a
// 4 GiB database (about 2 million claims) leave room for years. All keys
// that do not vote share 512 MiB of claims (about 600,000 claims, 16 keys
// at their full per-key budget) and 100,000 keys: fresh keys cannot fill
// the disk, and what they hold stays small beside what keys that vote may
// store.
var DefaultBudget = Budget{ClaimsPerKey: 10000, RecipesPerKey: 5000, BytesPerKey: 32 << 20,
	PoolBytes: 512 << 20, PoolKeys: 100000, StoreBytes: 4 << 30}

func (b Budget) filled() Budget {
	d := DefaultBudget
	fill := func(v *int64, def int64) {
		if *v == 0 {
			*v = def
		}
	}
	fill(&b.ClaimsPerKey, d.ClaimsPerKey)
	fill(&b.RecipesPerKey, d.RecipesPerKey)
	fill(&b.BytesPerKey, d.BytesPerKey)
	fill(&b.PoolBytes, d.PoolBytes)
	fill(&b.PoolKeys, d.PoolKeys)
	fill(&b.StoreBytes, d.StoreBytes)
	return b
}

// WithBudget sets the budget for non-voting keys (default DefaultBudget).
func WithBudget(b Budget) Option { return func(c *config) { c.budget = b.filled() } }

// WithExempt names keys the budget never applies to, whatever their stored
// trust: the operator's trusted_keys, which the node trusts by config
// rather than by a stored trust level.
func WithExempt(fingerprints ...string) Option {
	return func(c *config) {
		if c.exempt == nil {
			c.exempt = map[string]bool{}
		}
		for _, f := range fingerprints {
			c.exempt[strings.ToUpper(f)] = true
		}
	}
}

// Exempt reports whether the budget never applies to fpr: named by
// WithExempt, or in the last SetVoters set.
func (s *Store) Exempt(fpr string) bool {
	f := strings.ToUpper(fpr)
	return s.cfg.exempt[f] || s.voting(f)
}

// SetVoters replaces the set of keys that vote without a voting trust
// level in the store: keys certified within trust_hops, which the node's
// trust view derives (core.Node pushes it whenever it rebuilds the view).
// Their claims are exempt from the budget like trusted keys'.
func (s *Store) SetVoters(fingerprints []string) {
	m := make(map[string]bool, len(fingerprints))
	for _, f := range fingerprints {
		m[strings.ToUpper(f)] = true
	}
	s.voters.Store(&m)
}

func (s *Store) voting(upperFpr string) bool {
	m := s.voters.Load()
	return m != nil && (*m)[upperFpr]
}

// keyUsage is one key_counts value: what a key's claims take in the store,
// and whether they are counted in the pool.
type keyUsage struct {
	claims, recipes, bytes int64
	// pooled: the key did not vote at its last stored claim, so its bytes
	// are in meta pool_bytes and it is one of pool_keys (schema 6).
	pooled bool
}

const usagePooled = 1 // key_counts flags

func decodeKeyUsage(v []byte) keyUsage {
	if len(v) != 24 && len(v) != 25 { // 24: schema 4 and 5, no flags
		return keyUsage{}
	}
	return keyUsage{
		claims:  int64(binary.BigEndian.Uint64(v[0:])),
		recipes: int64(binary.BigEndian.Uint64(v[8:])),
		bytes:   int64(binary.BigEndian.Uint64(v[16:])),
		pooled:  len(v) == 25 && v[24]&usagePooled != 0,
	}
}

func (u keyUsage) encode() []byte {
	b := make([]byte, 0, 25)
	b = binary.BigEndian.AppendUint64(b, uint64(u.claims))
	b = binary.BigEndian.AppendUint64(b, uint64(u.recipes))
	b = binary.BigEndian.AppendUint64(b, uint64(u.bytes))
	var flags byte
	if u.pooled {
		flags |= usagePooled
	}
	return append(b, flags)
}

// over reports which per-key limit the key would pass with one more claim
// of size bytes (newRecipe: a recipe the key has not claimed before); ""
// if none.
func (b Budget) over(u keyUsage, size int64, newRecipe bool) string {
	switch {
	case b.ClaimsPerKey >= 0 && u.claims+1 > b.ClaimsPerKey:
		return fmt.Sprintf("key holds %d claims (budget %d per key)", u.claims, b.ClaimsPerKey)
	case newRecipe && b.RecipesPerKey >= 0 && u.recipes+1 > b.RecipesPerKey:
		return fmt.Sprintf("key claims %d recipes (budget %d per key)", u.recipes, b.RecipesPerKey)
	case b.BytesPerKey >= 0 && u.bytes+size > b.BytesPerKey:
		return fmt.Sprintf("key holds %d bytes of claims (budget %d per key)", u.bytes, b.BytesPerKey)
	}
	return ""
}

// The pool is what all keys that do not vote hold together: meta
// pool_bytes is the sum of the bytes, and pool_keys the number, of the
// key_counts records flagged pooled. Each stored claim moves its key in or
// out of the pool by whether the key votes now, so the sum stays exact:
// a key that starts to vote leaves the pool (its bytes are released) at
// its next stored claim, a key that stops voting joins it (all its bytes
// counted) at its next claim, which the pool may refuse. Until then it is
// counted as it was, so the pool may be fuller (a key came to vote) or
// emptier (a key stopped) than the keys voting now would make it; a claim
// is refused only if its key does not vote when it arrives, so a key that
// votes is never refused whatever the lag.
type poolTotals struct {
	read, changed bool
	bytes, keys   int64
}

func (w *txWriter) readPool() {
	if !w.pool.read {
		w.pool.read = true
		w.pool.bytes, w.pool.keys = int64(getUint(w.meta, metaPoolBytes)), int64(getUint(w.meta, metaPoolKeys))
	}
}

func (w *txWriter) writePool() error {
	if !w.pool.changed {
		return nil
	}
	if err := putUint(w.meta, metaPoolBytes, uint64(max(0, w.pool.bytes))); err != nil {
		return err
	}
	return putUint(w.meta, metaPoolKeys, uint64(max(0, w.pool.keys)))
}

// admit decides whether a claim of builder (key fk) of size bytes may be
// stored (newRecipe: a recipe the key has not claimed before): "" or why
// not. If it may, u (the key's key_counts record) and the pool totals are
// updated as storing it will. A key that votes is never refused. Whether it
// votes costs two map lookups (exempt), the Get of its key record and a
// hash of it (voteCache): the record is decoded once per version.
func (w *txWriter) admit(builder string, fk []byte, u *keyUsage, size int64, newRecipe bool) string {
	w.readPool()
	if w.exempt(builder) || w.votes.votes(fk, w.keys.Get(fk)) {
		if u.pooled { // started to vote: release its bytes
			w.pool.bytes -= u.bytes
			w.pool.keys--
			w.pool.changed, u.pooled = true, false
		}
	} else {
		if why := w.overNonVoting(*u, size, newRecipe); why != "" {
			return why
		}
		if !u.pooled {
			w.pool.bytes += u.bytes
			w.pool.keys++
			u.pooled = true
		}
		w.pool.bytes += size
		w.pool.changed = true
	}
	u.claims++
	u.bytes += size
	if newRecipe {
		u.recipes++
	}
	return ""
}

// overNonVoting reports which limit a claim of a key that does not vote
// would pass: its own, the pool's or the store's; "" if none.
func (w *txWriter) overNonVoting(u keyUsage, size int64, newRecipe bool) string {
	b := w.budget
	if why := b.over(u, size, newRecipe); why != "" {
		return why
	}
	add := size
	if !u.pooled {
		add += u.bytes
		if b.PoolKeys >= 0 && w.pool.keys+1 > b.PoolKeys {
			return fmt.Sprintf("%d keys that do not vote hold claims (pool %d keys)", w.pool.keys, b.PoolKeys)
		}
	}
	if b.PoolBytes >= 0 && w.pool.bytes+add > b.PoolBytes {
		return fmt.Sprintf("keys that do not vote hold %d bytes (pool %d)", w.pool.bytes, b.PoolBytes)
	}
	if b.StoreBytes >= 0 && w.tx.Size() > b.StoreBytes {
		return fmt.Sprintf("store holds %d bytes (budget %d for keys that do not vote)", w.tx.Size(), b.StoreBytes)
	}
	return ""
}

// recordVotes reports whether a stored key record votes: a level that
// votes and no revocation. A record that does not decode does not vote
// (as for Store.Votes).
func recordVotes(rec []byte) bool {
	if rec == nil {
		return false
	}
	ki, err := decodeKeyInfo(rec)
	return err == nil && ki.Trust.Normalize().Votes() && ki.Revocation == nil
}

// voteCache remembers recordVotes per key, with a hash of the record it
// was computed from: any write of the record (trust, revocation, merged
// key material) changes its bytes, so a changed record is decoded again
// and no invalidation is needed. Used by the writer goroutine only.
type voteCache struct {
	seed maphash.Seed
	m    map[string]voteEntry // by fingerprint key
}

type voteEntry struct {
	sum   uint64
	votes bool
}

// voteCacheMax bounds the cache (about 64 bytes an entry); when full it
// starts over.
const voteCacheMax = 1 << 16

func (c *voteCache) votes(fk, rec []byte) bool {
	if rec == nil {
		return false
	}
	if c.m == nil {
		c.seed, c.m = maphash.MakeSeed(), make(map[string]voteEntry)
	}
	sum := maphash.Bytes(c.seed, rec)
	if e, ok := c.m[string(fk)]; ok && e.sum == sum {
		return e.votes
	}
	v := recordVotes(rec)
	if len(c.m) >= voteCacheMax {
		clear(c.m)
	}
	c.m[string(fk)] = voteEntry{sum, v}
	return v
}

// PoolUsage returns what keys that do not vote hold together (Budget
// PoolBytes, PoolKeys): bytes of claims and keys with claims.
func (s *Store) PoolUsage() (held, keys int64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bktMeta)
		held, keys = int64(getUint(m, metaPoolBytes)), int64(getUint(m, metaPoolKeys))
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("pool usage: %w", err)
	}
	return held, keys, nil
}

// migratePool flags in key_counts the keys whose stored record does not
// vote and sums what they hold into meta pool_bytes and pool_keys: schema
// 5 → 6. Exempt keys (config, certified) are not known here: they leave
// the pool at their next claim.
func migratePool(tx *bolt.Tx) error {
	kc, keys := tx.Bucket(bktKeyCounts), tx.Bucket(bktKeys)
	var total, n int64
	type rec struct{ k, v []byte }
	var recs []rec
	err := kc.ForEach(func(k, v []byte) error {
		u := decodeKeyUsage(v)
		u.pooled = !recordVotes(keys.Get(k))
		if u.pooled {
			total += u.bytes
			n++
		}
		recs = append(recs, rec{bytes.Clone(k), u.encode()})
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range recs { // not inside ForEach: bbolt forbids writes while iterating
		if err := kc.Put(r.k, r.v); err != nil {
			return err
		}
	}
	m := tx.Bucket(bktMeta)
	if err := putUint(m, metaPoolBytes, uint64(total)); err != nil {
		return err
	}
	return putUint(m, metaPoolKeys, uint64(n))
}

// migrateKeyCounts fills key_counts from by_builder and claims: schema
// 3 → 4.
func migrateKeyCounts(tx *bolt.Tx) error {
	kc, err := tx.CreateBucketIfNotExists(bktKeyCounts)
	if err != nil {
		return err
	}
	claims := tx.Bucket(bktClaims)
	usage := map[string]*keyUsage{}
	var lastPair []byte
	err = tx.Bucket(bktByBuilder).ForEach(func(k, _ []byte) error {
		if isBuilderHead(k) {
			return nil
		}
		if len(k) < 1 || len(k) <= 1+int(k[0])+32 {
			return fmt.Errorf("%w: by_builder key %x", ErrCorrupt, k)
		}
		fl := 1 + int(k[0])
		fk, pair, ck := string(k[:fl]), k[:fl+32], k[fl+32:]
		u := usage[fk]
		if u == nil {
			u = new(keyUsage)
			usage[fk] = u
		}
		u.claims++
		if string(pair) != string(lastPair) {
			u.recipes++
			lastPair = append(lastPair[:0], pair...)
		}
		if v := claims.Get(ck); v != nil {
			u.bytes += int64(len(v))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for fk, u := range usage {
		if err := kc.Put([]byte(fk), u.encode()); err != nil {
			return err
		}
	}
	return nil
}
