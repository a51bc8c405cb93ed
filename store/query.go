package store

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

// GetRaw returns the canonical envelope (without the key) of a claim.
func (s *Store) GetRaw(id string) ([]byte, bool, error) {
	c, ok, err := s.get(id, false)
	if err != nil || !ok {
		return nil, ok, err
	}
	return c.Raw, true, nil
}

// Get returns a stored claim, re-parsed from the bytes this store wrote
// (no signature check: only verified claims are stored; the claim ID is
// re-checked against the bytes). Signer is the stored key, nil if the
// store has no record for it.
func (s *Store) Get(id string) (*attest.Claim, bool, error) { return s.get(id, true) }

func (s *Store) get(id string, full bool) (*attest.Claim, bool, error) {
	ck, err := claimKey(id)
	if err != nil {
		return nil, false, fmt.Errorf("get claim: %w", err)
	}
	var val []byte
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bktClaims).Get(ck); v != nil {
			val = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("get claim %s: %w", id, err)
	}
	if val == nil {
		return nil, false, nil
	}
	c, err := s.parse(id, val, full)
	if err != nil {
		return nil, false, err
	}
	return c, true, nil
}

// claimValues copies the `claims` values of ids (nil for unknown ones) in
// one read transaction. Callers decode them after it: decoding may read
// keys, and a transaction must not open another inside it (bbolt's remap
// lock would deadlock against a writer growing the file).
func (s *Store) claimValues(ids []string) ([][]byte, error) {
	vals := make([][]byte, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktClaims)
		for i, id := range ids {
			ck, err := claimKey(id)
			if err != nil {
				return err
			}
			if v := b.Get(ck); v != nil {
				vals[i] = bytes.Clone(v)
			}
		}
		return nil
	})
	return vals, err
}

// GetMany returns the claims with the given IDs, skipping unknown ones, in
// one read transaction.
func (s *Store) GetMany(ids []string) ([]*attest.Claim, error) {
	vals, err := s.claimValues(ids)
	if err != nil {
		return nil, fmt.Errorf("get claims: %w", err)
	}
	out := make([]*attest.Claim, 0, len(ids))
	for i, v := range vals {
		if v == nil {
			continue
		}
		c, err := s.parse(ids[i], v, true)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Statements returns the claims with the given IDs, skipping unknown
// ones, with ID and Statement only: what consensus and `info` read. A
// packed record's statement is read without rebuilding the envelope
// (its CRC-32C checks the bytes); other records are read as by GetMany,
// the claim ID re-hashed. Use Get, GetRaw or GetWire for the signed bytes.
func (s *Store) Statements(ids []string) ([]*attest.Claim, error) {
	vals, err := s.claimValues(ids)
	if err != nil {
		return nil, fmt.Errorf("get statements: %w", err)
	}
	out := make([]*attest.Claim, 0, len(ids))
	for i, v := range vals {
		if v == nil {
			continue
		}
		st, ok, err := packedStatement(v)
		if err != nil {
			return nil, fmt.Errorf("get statements: claim %s: %w", ids[i], err)
		}
		if !ok {
			c, err := s.parse(ids[i], v, true)
			if err != nil {
				return nil, err
			}
			st = c.Statement
		}
		out = append(out, &attest.Claim{ID: ids[i], Statement: st})
	}
	return out, nil
}

// VoteSpan returns the timestamps of a key's first and last claims about a
// recipe that are not mismatch reports (ok false when it has none). Ranking
// asks it for rotated keys, whose claims count as the successor's only
// before the revocation.
func (s *Store) VoteSpan(fpr, recipeID string) (first, last time.Time, ok bool, err error) {
	fk, err := fprKey(fpr)
	if err != nil {
		return first, last, false, fmt.Errorf("vote span: %w", err)
	}
	rk, err := recipeKey(recipeID)
	if err != nil {
		return first, last, false, fmt.Errorf("vote span: %w", err)
	}
	prefix := cat(fk, rk)
	err = s.db.View(func(tx *bolt.Tx) error {
		br := tx.Bucket(bktByRecipe)
		c := tx.Bucket(bktByBuilder).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) == len(prefix) {
				continue // the pair's head
			}
			sc, err := decodeSummary(br.Get(cat(rk, k[len(prefix):])))
			if err != nil {
				return err
			}
			if sc.Result == attest.ResultMismatch {
				continue
			}
			if !ok || sc.Timestamp.Before(first) {
				first = sc.Timestamp
			}
			if !ok || sc.Timestamp.After(last) {
				last = sc.Timestamp
			}
			ok = true
		}
		return nil
	})
	if err != nil {
		return first, last, false, fmt.Errorf("vote span of %s for %s: %w", fpr, recipeID, err)
	}
	return first, last, ok, nil
}

// parse decodes a `claims` value (copied out of its transaction).
func (s *Store) parse(id string, val []byte, full bool) (*attest.Claim, error) {
	raw, env, st, err := decodeClaimValue(val)
	if err != nil {
		return nil, fmt.Errorf("get claim %s: %w", id, err)
	}
	if got := attest.ClaimID(raw); got != id {
		return nil, fmt.Errorf("get claim %s: %w: stored bytes hash to %s", id, ErrCorrupt, got)
	}
	c := &attest.Claim{ID: id, Raw: raw, Envelope: env}
	if !full {
		return c, nil
	}
	// The bytes hash to the claim ID, so they are exactly the ones that
	// passed attest's strict decoding at ingest: a plain (faster) decode
	// of the payload suffices.
	if st == nil {
		if st, err = attest.ParseStoredStatement(env.Payload); err != nil {
			return nil, fmt.Errorf("get claim %s: %w: %v", id, ErrCorrupt, err)
		}
	}
	c.Statement = st
	c.Signer = s.Lookup(c.Statement.Builder)
	return c, nil
}

// GetWire returns a claim as sent to peers: the envelope with the
// builder's stored public key embedded, so peers that do not know the key
// can verify it.
func (s *Store) GetWire(id string) ([]byte, bool, error) {
	c, ok, err := s.Get(id)
	if err != nil || !ok {
		return nil, ok, err
	}
	env := *c.Envelope
	if ki, err := s.GetKey(c.Statement.Builder); err == nil {
		env.Key = ki.PublicKey
	}
	b, err := env.Encode()
	if err != nil {
		return nil, false, fmt.Errorf("get wire %s: %w", id, err)
	}
	return b, true, nil
}

// Has reports whether the claim is stored.
func (s *Store) Has(id string) (bool, error) {
	ck, err := claimKey(id)
	if err != nil {
		return false, fmt.Errorf("has claim: %w", err)
	}
	var ok bool
	err = s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bktClaims).Get(ck) != nil
		return nil
	})
	return ok, err
}

// ByRecipe returns the summaries of all claims for a recipe, ordered by
// claim key.
func (s *Store) ByRecipe(recipeID string) ([]StoredClaim, error) {
	rk, err := recipeKey(recipeID)
	if err != nil {
		return nil, fmt.Errorf("by recipe: %w", err)
	}
	var out []StoredClaim
	err = s.db.View(func(tx *bolt.Tx) error {
		out, err = scanRecipe(tx.Bucket(bktByRecipe), rk, recipeID, out, newInterner())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("by recipe %s: %w", recipeID, err)
	}
	return out, nil
}

func scanRecipe(b *bolt.Bucket, rk []byte, recipeID string, out []StoredClaim, in *interner) ([]StoredClaim, error) {
	c := b.Cursor()
	for k, v := c.Seek(rk); k != nil && bytes.HasPrefix(k, rk); k, v = c.Next() {
		sc, err := decodeSummaryInterned(v, in)
		if err != nil {
			return nil, err
		}
		if sc.ID, err = in.claimID(k[len(rk):]); err != nil {
			return nil, err
		}
		sc.RecipeID = recipeID
		out = append(out, sc)
	}
	return out, nil
}

// RecipeClaims is one recipe of a package with its claims.
type RecipeClaims struct {
	Recipe RecipeSummary
	Claims []StoredClaim
}

// ByPackage returns every recipe of a source package (all Debian versions
// when debianVersion is "") with its claim summaries, in one read
// transaction. Ordered by Debian version string, then recipe ID.
func (s *Store) ByPackage(pkg, debianVersion string) ([]RecipeClaims, error) {
	prefix := packagePrefix(pkg, debianVersion)
	var out []RecipeClaims
	in := newInterner()
	err := s.db.View(func(tx *bolt.Tx) error {
		br := tx.Bucket(bktByRecipe)
		c := tx.Bucket(bktByPackage).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if packageKeyKind(k) != pkgKeySummary {
				continue
			}
			r, err := decodeRecipeSummary(v)
			if err != nil {
				return err
			}
			rk := k[len(k)-32:]
			claims, err := scanRecipe(br, rk, r.RecipeID, make([]StoredClaim, 0, r.Claims), in)
			if err != nil {
				return err
			}
			out = append(out, RecipeClaims{Recipe: r, Claims: claims})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("by package %s: %w", pkg, err)
	}
	return out, nil
}

func packagePrefix(pkg, debianVersion string) []byte {
	prefix := append([]byte(pkg), 0)
	if debianVersion != "" {
		prefix = append(append(prefix, debianVersion...), 0)
	}
	return prefix
}

// Recipes returns the recipe summaries of a package (all Debian versions)
// without the claims: the cheap listing for `lebowski info`.
func (s *Store) Recipes(pkg string) ([]RecipeSummary, error) {
	prefix := packagePrefix(pkg, "")
	var out []RecipeSummary
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktByPackage).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if packageKeyKind(k) != pkgKeySummary {
				continue
			}
			r, err := decodeRecipeSummary(v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recipes of %s: %w", pkg, err)
	}
	return out, nil
}

// Packages lists the source packages the store holds claims for.
func (s *Store) Packages() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktDigests).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list packages: %w", err)
	}
	return out, nil
}

// ByBuilder returns the summaries of all claims signed by a key.
func (s *Store) ByBuilder(fpr string) ([]StoredClaim, error) {
	fk, err := fprKey(fpr)
	if err != nil {
		return nil, fmt.Errorf("by builder: %w", err)
	}
	var out []StoredClaim
	err = s.db.View(func(tx *bolt.Tx) error {
		br := tx.Bucket(bktByRecipe)
		c := tx.Bucket(bktByBuilder).Cursor()
		for k, _ := c.Seek(fk); k != nil && bytes.HasPrefix(k, fk); k, _ = c.Next() {
			if isBuilderHead(k) {
				continue
			}
			rest := k[len(fk):]
			if len(rest) < 33 {
				return fmt.Errorf("%w: by_builder key %x", ErrCorrupt, k)
			}
			sc, err := summaryAt(br, rest[:32], rest[32:])
			if err != nil {
				return err
			}
			out = append(out, sc)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("by builder %s: %w", fpr, err)
	}
	return out, nil
}

func summaryAt(br *bolt.Bucket, rk, ck []byte) (StoredClaim, error) {
	sc, err := decodeSummary(br.Get(cat(rk, ck)))
	if err != nil {
		return sc, err
	}
	if sc.ID, err = claimIDString(ck); err != nil {
		return sc, err
	}
	sc.RecipeID = hex.EncodeToString(rk)
	return sc, nil
}

// ByArtifact returns the claims that list a file with this sha256 (hex):
// what `lebowski verify FILE.deb` starts from.
func (s *Store) ByArtifact(sha256hex string) ([]StoredClaim, error) {
	h, err := hex.DecodeString(sha256hex)
	if err != nil || len(h) != 32 {
		return nil, fmt.Errorf("by artifact: %q is not a sha256 in hex", sha256hex)
	}
	var out []StoredClaim
	err = s.db.View(func(tx *bolt.Tx) error {
		br := tx.Bucket(bktByRecipe)
		c := tx.Bucket(bktByArtifact).Cursor()
		for k, v := c.Seek(h); k != nil && bytes.HasPrefix(k, h); k, v = c.Next() {
			if len(v) != 32 {
				return fmt.Errorf("%w: by_artifact value %x", ErrCorrupt, v)
			}
			sc, err := summaryAt(br, v, k[32:])
			if err != nil {
				return err
			}
			out = append(out, sc)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("by artifact %s: %w", sha256hex, err)
	}
	return out, nil
}

// Equivocations returns the stored proofs, for one key or all ("").
func (s *Store) Equivocations(fpr string) ([]Proof, error) {
	var prefix []byte
	if fpr != "" {
		var err error
		if prefix, err = fprKey(fpr); err != nil {
			return nil, fmt.Errorf("equivocations: %w", err)
		}
	}
	var out []Proof
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktEquivocations).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			p, err := decodeProof(v)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("equivocations: %w", err)
	}
	return out, nil
}

// Digests returns the digest of every package (for /lebowski/sync/1).
func (s *Store) Digests() (map[string]Digest, error) {
	out := make(map[string]Digest)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktDigests).ForEach(func(k, v []byte) error {
			d, err := decodeDigest(v)
			if err != nil {
				return err
			}
			out[string(k)] = d
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("package digests: %w", err)
	}
	return out, nil
}

// ClaimIDs lists the IDs of all claims of a package, sorted.
func (s *Store) ClaimIDs(pkg string) ([]string, error) {
	prefix := packagePrefix(pkg, "")
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		br := tx.Bucket(bktByRecipe).Cursor()
		c := tx.Bucket(bktByPackage).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if packageKeyKind(k) != pkgKeySummary {
				continue
			}
			rk := k[len(k)-32:]
			for ck, _ := br.Seek(rk); ck != nil && bytes.HasPrefix(ck, rk); ck, _ = br.Next() {
				id, err := claimIDString(ck[32:])
				if err != nil {
					return err
				}
				out = append(out, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim ids of %s: %w", pkg, err)
	}
	sort.Strings(out)
	return out, nil
}

// MarkOwn records that a stored claim is one of this node's builds.
func (s *Store) MarkOwn(claimID string) error {
	if s.cfg.readOnly {
		return fmt.Errorf("mark own: %w", ErrReadOnly)
	}
	ck, err := claimKey(claimID)
	if err != nil {
		return fmt.Errorf("mark own: %w", err)
	}
	c, ok, err := s.Get(claimID)
	if err != nil {
		return fmt.Errorf("mark own: %w", err)
	}
	if !ok {
		return fmt.Errorf("mark own: %w: claim %s (ingest it first)", ErrNotFound, claimID)
	}
	rk, _ := recipeKey(c.Statement.RecipeID)
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bktOwn).Put(cat(rk, ck), nil)
	})
}

// Own returns this node's claims for a recipe, or for all recipes ("").
func (s *Store) Own(recipeID string) ([]StoredClaim, error) {
	var prefix []byte
	if recipeID != "" {
		var err error
		if prefix, err = recipeKey(recipeID); err != nil {
			return nil, fmt.Errorf("own: %w", err)
		}
	}
	var out []StoredClaim
	err := s.db.View(func(tx *bolt.Tx) error {
		br := tx.Bucket(bktByRecipe)
		c := tx.Bucket(bktOwn).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) < 33 {
				return fmt.Errorf("%w: own key %x", ErrCorrupt, k)
			}
			sc, err := summaryAt(br, k[:32], k[32:])
			if err != nil {
				return err
			}
			out = append(out, sc)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("own: %w", err)
	}
	return out, nil
}

// Stats are store totals.
type Stats struct {
	Claims   uint64 `json:"claims"`
	Recipes  uint64 `json:"recipes"`
	Packages int    `json:"packages"`
	Keys     int    `json:"keys"`
	Blobs    int    `json:"blobs"`
	Proofs   int    `json:"equivocation_proofs"`
	Own      int    `json:"own"`
	Schema   uint64 `json:"schema"`
	// FileSize is the bbolt file's size in bytes (large blobs not included).
	FileSize int64 `json:"file_size"`
}

// Stats returns totals. Claim and recipe counts are maintained on ingest;
// the others are counted (small buckets).
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bktMeta)
		st.Claims, st.Recipes, st.Schema = getUint(m, metaClaims), getUint(m, metaRecipes), getUint(m, metaSchema)
		st.Packages = tx.Bucket(bktDigests).Stats().KeyN
		st.Keys = tx.Bucket(bktKeys).Stats().KeyN
		st.Blobs = tx.Bucket(bktBlobs).Stats().KeyN
		st.Proofs = tx.Bucket(bktEquivocations).Stats().KeyN
		st.Own = tx.Bucket(bktOwn).Stats().KeyN
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	st.FileSize = fi.Size()
	return st, nil
}
