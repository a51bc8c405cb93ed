package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

// ErrOverBudget is wrapped by the Err of a claim refused because its key
// (or the whole store) is over budget (StatusOverBudget).
var ErrOverBudget = errors.New("over budget")

// Budget bounds what keys that do not vote (unknown, unvetted) can make the
// store hold: anyone can make fresh keys, so without it a flood of valid
// claims fills the disk. Keys that vote (own, trusted) are never refused
// and nothing is ever evicted: a budget only stops new claims. Zero fields
// take the defaults (DefaultBudget); a negative field disables that limit.
type Budget struct {
	// ClaimsPerKey, RecipesPerKey and BytesPerKey bound one non-voting
	// key's claims, distinct recipes and envelope bytes.
	ClaimsPerKey  int64 `yaml:"claims_per_key"`
	RecipesPerKey int64 `yaml:"recipes_per_key"`
	BytesPerKey   int64 `yaml:"bytes_per_key"`
	// StoreBytes is the database size after which claims of non-voting
	// keys are refused while the node keeps serving and storing the
	// claims of keys that vote.
	StoreBytes int64 `yaml:"store_bytes"`
}

// DefaultBudget: an honest builder makes one claim per recipe it rebuilds
// (a few per day); 10,000 claims, 5,000 recipes and 32 MiB per key and a
// 4 GiB database (about 2 million claims) leave room for years.
var DefaultBudget = Budget{ClaimsPerKey: 10000, RecipesPerKey: 5000, BytesPerKey: 32 << 20, StoreBytes: 4 << 30}

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

// keyUsage is one key_counts value: what a key's claims take in the store.
type keyUsage struct{ claims, recipes, bytes int64 }

func decodeKeyUsage(v []byte) keyUsage {
	if len(v) != 24 {
		return keyUsage{}
	}
	return keyUsage{
		claims:  int64(binary.BigEndian.Uint64(v[0:])),
		recipes: int64(binary.BigEndian.Uint64(v[8:])),
		bytes:   int64(binary.BigEndian.Uint64(v[16:])),
	}
}

func (u keyUsage) encode() []byte {
	b := make([]byte, 0, 24)
	b = binary.BigEndian.AppendUint64(b, uint64(u.claims))
	b = binary.BigEndian.AppendUint64(b, uint64(u.recipes))
	return binary.BigEndian.AppendUint64(b, uint64(u.bytes))
}

// over reports which limit the key would pass with one more claim of size
// bytes (newRecipe: a recipe the key has not claimed before); "" if none.
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

// checkBudget decides whether the claim may be stored. It reads the key's
// trust only when a limit would be passed, so the common case costs one
// small Get (key_counts, done by the caller).
func (w *txWriter) checkBudget(c *attest.Claim, fk []byte, u keyUsage, size int64, newRecipe bool) (string, error) {
	b := w.budget
	why := b.over(u, size, newRecipe)
	if why == "" && b.StoreBytes >= 0 && w.tx.Size() > b.StoreBytes {
		why = fmt.Sprintf("store holds %d bytes (budget %d for keys that do not vote)", w.tx.Size(), b.StoreBytes)
	}
	if why == "" || w.exempt(c.Statement.Builder) {
		return "", nil
	}
	if v := w.keys.Get(fk); v != nil {
		ki, err := decodeKeyInfo(v)
		if err != nil {
			return "", err
		}
		if ki.Trust.Normalize().Votes() && ki.Revocation == nil { // a revoked key votes nowhere
			return "", nil
		}
	}
	return why, nil
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
