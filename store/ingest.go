package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/lebowski-dist/lebowski/attest"
)

// Status is the outcome of ingesting one claim.
type Status int

const (
	// StatusRejected: the claim failed a check; see IngestResult.Err.
	StatusRejected Status = iota
	// StatusNew: stored.
	StatusNew
	// StatusDuplicate: already held; nothing changed.
	StatusDuplicate
	// StatusEquivocation: stored, and it contradicts an earlier success
	// claim of the same builder for the same recipe; Proof is set and the
	// key is flagged.
	StatusEquivocation
	// StatusOverBudget: not stored, its key (which does not vote), the
	// pool of keys that do not vote or the store is over its Budget; Err
	// wraps ErrOverBudget.
	StatusOverBudget
)

func (s Status) String() string {
	switch s {
	case StatusNew:
		return "new"
	case StatusDuplicate:
		return "duplicate"
	case StatusEquivocation:
		return "equivocation"
	case StatusOverBudget:
		return "over_budget"
	}
	return "rejected"
}

// Added reports, per result, whether the claim was newly stored (new or
// equivocation): what the network layer reports as new.
func Added(res []IngestResult) []bool {
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r.Status == StatusNew || r.Status == StatusEquivocation
	}
	return out
}

// Stored reports whether the claim is in the store after ingest.
func (s Status) Stored() bool { return s != StatusRejected && s != StatusOverBudget }

// IngestResult is the outcome for one claim, in the order given to Ingest.
type IngestResult struct {
	ID     string
	Status Status
	Proof  *Proof // StatusEquivocation only
	Err    error  // StatusRejected (wraps ErrBadClaim) and StatusOverBudget (wraps ErrOverBudget) only
	// Claim is the verified claim (VerifyAndIngest only; nil where the
	// wire did not verify).
	Claim *attest.Claim
}

type ingestReq struct {
	claims []*attest.Claim
	prep   []prepared // checks and encodings done by the caller, not the writer
	res    []IngestResult
	origin Origin
	done   chan error // buffered(1)
}

// Ingest stores verified claims (from attest.Verify or attest.Sign). It
// returns only after the transaction holding them has committed (fsync
// unless WithNoSync): an acknowledged claim survives a crash. Claims from
// concurrent callers are committed together (group commit). A claim that
// fails a consistency check is reported in its IngestResult and does not
// affect the others. The error is for the whole call: the store is closed,
// the context ended before the claims were queued, or the commit failed.
// If ctx ends after the claims were queued, Ingest returns ctx.Err() and the
// claims may or may not be committed.
func (s *Store) Ingest(ctx context.Context, claims ...*attest.Claim) ([]IngestResult, error) {
	return s.ingest(ctx, claims, nil)
}

// ingest is Ingest with the claims' checks and encodings optionally done
// already (prep[i] = prepare(claims[i])).
func (s *Store) ingest(ctx context.Context, claims []*attest.Claim, prep []prepared) ([]IngestResult, error) {
	if s.cfg.readOnly {
		return nil, fmt.Errorf("ingest: %w", ErrReadOnly)
	}
	out := make([]IngestResult, 0, len(claims))
	var reqs []*ingestReq
	for start := 0; start < len(claims); start += s.cfg.maxBatch {
		end := min(start+s.cfg.maxBatch, len(claims))
		r := &ingestReq{claims: claims[start:end], res: make([]IngestResult, end-start), origin: originFrom(ctx), done: make(chan error, 1)}
		// Checks and encodings run here, in the callers' goroutines (in
		// parallel), so the single writer only does database work.
		if prep != nil {
			r.prep = prep[start:end]
		} else {
			r.prep = make([]prepared, end-start)
			for i, c := range r.claims {
				r.prep[i] = prepare(c)
			}
		}
		select {
		case s.reqs <- r:
			reqs = append(reqs, r)
		case <-s.quit:
			return nil, fmt.Errorf("ingest: %w", ErrClosed)
		case <-ctx.Done():
			return nil, fmt.Errorf("ingest: %w", ctx.Err())
		}
	}
	for _, r := range reqs {
		select {
		case err := <-r.done:
			if err != nil {
				return nil, fmt.Errorf("ingest: %w", err)
			}
			out = append(out, r.res...)
		case <-ctx.Done():
			return nil, fmt.Errorf("ingest: waiting for commit: %w", ctx.Err())
		}
	}
	return out, nil
}

// VerifyAndIngest verifies wire envelopes with attest.Verify (keys from the
// store, else the embedded key, which is then stored with attest.TrustUnknown) and
// ingests the valid ones. Results are in input order; a wire that fails
// verification has StatusRejected and an Err wrapping attest.ErrInvalid.
func (s *Store) VerifyAndIngest(ctx context.Context, opt attest.VerifyOptions, wires ...[]byte) ([]IngestResult, error) {
	out := make([]IngestResult, len(wires))
	// Verification (and the claims' checks and encodings) is independent
	// per claim: it runs on all cores but one (verifyWorkers), one chunk at
	// a time, while the previous chunk is committed (pipelined: the single
	// writer's database work overlaps the next chunk's signatures). Chunks are committed in input order,
	// so "first claim of a builder for a recipe" keeps meaning first in
	// the input.
	type chunk struct {
		claims []*attest.Claim
		prep   []prepared
		idx    []int
	}
	commits := make(chan chunk, 1)
	errc := make(chan error, 1)
	go func() {
		var err error
		for c := range commits {
			if err != nil || len(c.claims) == 0 {
				continue // drain
			}
			var res []IngestResult
			if res, err = s.ingest(ctx, c.claims, c.prep); err != nil {
				continue
			}
			for j, r := range res {
				r.Claim = c.claims[j]
				out[c.idx[j]] = r
			}
		}
		errc <- err
	}()
	size := verifyChunk(len(wires))
	verified := make([]*attest.Claim, size)
	preps := make([]prepared, size)
	for lo := 0; lo < len(wires); lo += size {
		part := wires[lo:min(lo+size, len(wires))]
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(verifyWorkers(), max(1, len(part)/8)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < len(part); i = int(next.Add(1) - 1) {
					c, err := attest.Verify(part[i], s, opt)
					if err != nil {
						out[lo+i] = IngestResult{Status: StatusRejected, Err: err}
						c = nil
					}
					verified[i] = c
					if c != nil {
						preps[i] = prepare(c) // here, in parallel, not on the commit path
					}
				}
			}()
		}
		wg.Wait()
		var ch chunk
		for i, c := range verified[:len(part)] {
			if c != nil {
				ch.claims = append(ch.claims, c)
				ch.prep = append(ch.prep, preps[i])
				ch.idx = append(ch.idx, lo+i)
			}
		}
		if ctx.Err() != nil {
			break
		}
		commits <- ch
	}
	close(commits)
	if err := <-errc; err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return out, nil
}

// verifyChunk is how many claims VerifyAndIngest verifies before handing
// them to the writer. Commits of fewer claims cost more per claim (fewer
// claims share each dirty page and the fsync), so chunks stay large:
// an import of many claims overlaps verification and commits, one of a
// few hundred is verified and committed at once.
func verifyChunk(n int) int {
	return max(1, min(n, 512))
}

// writer is the only goroutine that writes claims. It takes one request,
// then everything already waiting (senders block on the unbuffered channel
// while a commit runs, so they form the next batch), up to maxBatch claims,
// optionally lingering maxDelay, and commits them in one transaction.
func (s *Store) writer() {
	defer close(s.done)
	for {
		var first *ingestReq
		select {
		case first = <-s.reqs:
		case <-s.quit:
			return
		}
		batch := []*ingestReq{first}
		n := len(first.claims)
		var linger <-chan time.Time
		var timer *time.Timer
		if s.cfg.maxDelay > 0 {
			timer = time.NewTimer(s.cfg.maxDelay)
			linger = timer.C
		}
	collect:
		for n < s.cfg.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				n += len(r.claims)
				continue
			default:
			}
			if linger == nil {
				break collect
			}
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				n += len(r.claims)
			case <-linger:
				break collect
			case <-s.quit:
				break collect
			}
		}
		if timer != nil {
			timer.Stop()
		}
		err := s.commit(batch)
		for _, r := range batch {
			r.done <- err
		}
	}
}

func (s *Store) commit(batch []*ingestReq) error {
	var keyUpdates []string
	keysChanged := false
	start := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := newTxWriter(tx, s.cfg.now().UTC().Truncate(time.Second))
		w.budget, w.exempt, w.votes = s.cfg.budget, s.Exempt, &s.votes
		for _, r := range batch {
			for i, c := range r.claims {
				res, err := w.ingestOne(c, r.prep[i], r.origin)
				if err != nil {
					return err // storage failure: abort the whole batch
				}
				r.res[i] = res
			}
		}
		keyUpdates = w.flagged
		keysChanged = w.keysChanged
		return w.finish()
	})
	if err != nil {
		// Results computed inside an aborted transaction are void.
		s.log.Error("ingest commit failed", "claims", countClaims(batch), "err", err)
		return fmt.Errorf("commit: %w", err)
	}
	if keysChanged {
		s.keysVersion.Add(1)
	}
	for _, r := range batch {
		for _, res := range r.res {
			if int(res.Status) >= 0 && int(res.Status) < len(s.ingested) {
				s.ingested[res.Status].Add(1)
			}
		}
	}
	if len(keyUpdates) > 0 {
		s.log.Warn("equivocating builder keys flagged", "fingerprints", keyUpdates)
	}
	s.log.Debug("ingest committed", "requests", len(batch), "claims", countClaims(batch), "took", time.Since(start))
	return nil
}

func countClaims(batch []*ingestReq) int {
	n := 0
	for _, r := range batch {
		n += len(r.claims)
	}
	return n
}

// txWriter applies claims inside one write transaction.
type txWriter struct {
	tx                                                 *bolt.Tx
	now                                                time.Time
	claims, byRecipe, byPackage, byBuilder, byArtifact *bolt.Bucket
	keys, equiv, digests, meta, origins, keyCounts     *bolt.Bucket
	budget                                             Budget
	exempt                                             func(fpr string) bool
	votes                                              *voteCache
	pool                                               poolTotals // read on first use, written by finish
	newClaims, newRecipes                              uint64
	keysChanged                                        bool
	flagged                                            []string
	// written once per transaction by finish
	recipes map[string]*RecipeSummary // by_package key → summary
	voters  map[string][]byte         // by_package key → voter entries new in this transaction
	digs    map[string]*Digest        // package → digest
}

func newTxWriter(tx *bolt.Tx, now time.Time) *txWriter {
	return &txWriter{
		tx: tx, now: now,
		claims: tx.Bucket(bktClaims), byRecipe: tx.Bucket(bktByRecipe), byPackage: tx.Bucket(bktByPackage),
		byBuilder: tx.Bucket(bktByBuilder), byArtifact: tx.Bucket(bktByArtifact), keys: tx.Bucket(bktKeys),
		equiv: tx.Bucket(bktEquivocations), digests: tx.Bucket(bktDigests), meta: tx.Bucket(bktMeta), origins: tx.Bucket(bktOrigins),
		keyCounts: tx.Bucket(bktKeyCounts),
		recipes:   map[string]*RecipeSummary{}, voters: map[string][]byte{}, digs: map[string]*Digest{},
	}
}

func (w *txWriter) finish() error {
	for k, r := range w.recipes {
		if err := w.byPackage.Put([]byte(k), encodeRecipeSummary(r)); err != nil {
			return err
		}
		if nv := w.voters[k]; len(nv) > 0 {
			if err := appendVoters(w.byPackage, []byte(k), r.Voters-countVoters(nv), nv); err != nil {
				return err
			}
		}
	}
	for pkg, d := range w.digs {
		if err := w.digests.Put([]byte(pkg), encodeDigest(*d)); err != nil {
			return err
		}
	}
	if w.newClaims > 0 {
		if err := addUint(w.meta, metaClaims, w.newClaims); err != nil {
			return err
		}
	}
	if w.newRecipes > 0 {
		if err := addUint(w.meta, metaRecipes, w.newRecipes); err != nil {
			return err
		}
	}
	return w.writePool()
}

func rejected(id string, format string, a ...any) IngestResult {
	return IngestResult{ID: id, Status: StatusRejected, Err: fmt.Errorf("%w %s: %s", ErrBadClaim, id, fmt.Sprintf(format, a...))}
}

// checked is a claim that passed checkClaim, with its keys and values.
type checked struct {
	ck, rk, fk, akey []byte
	pub              []byte
	certifiers       []string
	revocation       *attest.Revocation
	artifacts        [][]byte
	value            []byte // `claims` value
	summary          []byte // `by_recipe` value
}

// prepared is checkClaim's result: ch or, if nil, the rejection.
type prepared struct {
	ch  *checked
	rej IngestResult
}

// prepare checks c and encodes its values, without touching the DB.
func prepare(c *attest.Claim) prepared {
	ch, rej := checkClaim(c)
	if ch != nil {
		ch.value = encodeClaimValue(c.Raw, c.Statement)
		ch.summary = encodeSummary(c.Statement, ch.akey, ch.fk)
	}
	return prepared{ch: ch, rej: rej}
}

func checkClaim(c *attest.Claim) (*checked, IngestResult) {
	if c == nil || c.Statement == nil || len(c.Raw) == 0 {
		return nil, rejected("", "nil claim, statement or raw envelope")
	}
	if len(c.Raw) > attest.MaxEnvelopeSize {
		return nil, rejected(c.ID, "raw envelope of %d bytes exceeds %d", len(c.Raw), attest.MaxEnvelopeSize)
	}
	if id := attest.ClaimID(c.Raw); id != c.ID {
		return nil, rejected(c.ID, "id does not match the raw envelope (its CID is %s)", id)
	}
	st := c.Statement
	if err := st.Validate(time.Time{}, 0); err != nil {
		return nil, rejected(c.ID, "%v", err)
	}
	if c.Signer != nil && attest.Fingerprint(c.Signer) != st.Builder {
		return nil, rejected(c.ID, "signer %s is not the statement's builder %s", attest.Fingerprint(c.Signer), st.Builder)
	}
	ck, err := claimKey(c.ID)
	if err != nil {
		return nil, rejected(c.ID, "%v", err)
	}
	rk, _ := recipeKey(st.RecipeID) // Validate checked it is a sha256 hex
	fk, err := fprKey(st.Builder)
	if err != nil {
		return nil, rejected(c.ID, "%v", err)
	}
	akey, _ := hex.DecodeString(st.ArtifactKey())
	ch := &checked{ck: ck, rk: rk, fk: fk, akey: akey}
	for _, a := range st.Artifacts {
		h, _ := hex.DecodeString(a.SHA256) // Validate checked it
		ch.artifacts = append(ch.artifacts, h)
	}
	ch.certifiers = attest.Certifiers(c.Signer)
	ch.revocation = attest.RevocationOf(c.Signer, time.Now().Add(attest.DefaultSkew))
	if c.Envelope != nil && len(c.Envelope.Key) > 0 {
		ch.pub = c.Envelope.Key
	} else if c.Signer != nil {
		if ch.pub, err = attest.SerializeKey(c.Signer); err != nil {
			return nil, rejected(c.ID, "serialize signer key: %v", err)
		}
	}
	return ch, IngestResult{}
}

// ingestOne stores c. A returned error is a storage failure (abort the
// transaction); bad claims come back as StatusRejected.
func (w *txWriter) ingestOne(c *attest.Claim, p prepared, origin Origin) (IngestResult, error) {
	ch := p.ch
	if ch == nil {
		return p.rej, nil
	}
	if w.claims.Get(ch.ck) != nil {
		return IngestResult{ID: c.ID, Status: StatusDuplicate}, nil
	}
	st := c.Statement
	res := IngestResult{ID: c.ID, Status: StatusNew}

	// Equivocation and "first claim of this builder for this recipe": one
	// Get of the pair's head in by_builder (builderrecipe.go), whatever
	// the builder's number of claims for the recipe.
	prefix := cat(ch.fk, ch.rk)
	br, err := decodeBuilderRecipe(w.byBuilder.Get(prefix))
	if err != nil {
		return IngestResult{}, err
	}
	firstOfBuilder := !br.seen
	usage := decodeKeyUsage(w.keyCounts.Get(ch.fk))
	size := int64(len(ch.value))
	if len(ch.pub) > 0 && w.keys.Get(ch.fk) == nil {
		size += int64(len(ch.pub)) // the key record this claim creates is charged to the key too
	}
	if why := w.admit(st.Builder, ch.fk, &usage, size, firstOfBuilder); why != "" {
		return IngestResult{ID: c.ID, Status: StatusOverBudget, Err: fmt.Errorf("claim %s of %s: %w: %s", c.ID, st.Builder, ErrOverBudget, why)}, nil
	}
	if err := w.keyCounts.Put(ch.fk, usage.encode()); err != nil {
		return IngestResult{}, err
	}
	head := br
	head.seen = true
	if st.Result == attest.ResultSuccess {
		switch {
		case br.success == nil:
			head.success, head.akey = ch.ck, ch.akey
		case !bytes.Equal(br.akey, ch.akey):
			oldID, err := claimIDString(br.success)
			if err != nil {
				return IngestResult{}, err
			}
			res.Status = StatusEquivocation
			res.Proof = &Proof{Builder: st.Builder, RecipeID: st.RecipeID, ClaimA: oldID, ClaimB: c.ID, Detected: w.now}
		}
	}
	// A key votes for a recipe with any claim but a mismatch report.
	newVoter := !br.voted && st.Result != attest.ResultMismatch
	head.voted = br.voted || newVoter
	if !br.seen || newVoter || (br.success == nil && head.success != nil) {
		if err := w.byBuilder.Put(prefix, head.encode()); err != nil {
			return IngestResult{}, err
		}
	}

	if err := w.claims.Put(ch.ck, ch.value); err != nil {
		return IngestResult{}, err
	}
	if err := w.byRecipe.Put(cat(ch.rk, ch.ck), ch.summary); err != nil {
		return IngestResult{}, err
	}
	origin.At = w.now
	if err := w.origins.Put(ch.ck, encodeOrigin(origin)); err != nil {
		return IngestResult{}, err
	}
	if err := w.byBuilder.Put(cat(prefix, ch.ck), nil); err != nil {
		return IngestResult{}, err
	}
	for _, h := range ch.artifacts {
		if err := w.byArtifact.Put(cat(h, ch.ck), ch.rk); err != nil {
			return IngestResult{}, err
		}
	}
	var voter []byte
	if newVoter {
		voter = encodeVoter(ch.fk, st.Timestamp)
	}
	if err := w.updateRecipe(st, ch.rk, firstOfBuilder, voter); err != nil {
		return IngestResult{}, err
	}
	if err := w.updateDigest(st.Package, c.ID); err != nil {
		return IngestResult{}, err
	}
	if err := w.updateKey(c.ID, st.Builder, ch, res.Proof); err != nil {
		return IngestResult{}, err
	}
	w.newClaims++
	return res, nil
}

func packageKey(pkg, debVersion string, rk []byte) []byte {
	return cat([]byte(pkg), []byte{0}, []byte(debVersion), []byte{0}, rk)
}

func (w *txWriter) updateRecipe(st *attest.Statement, rk []byte, newBuilder bool, voter []byte) error {
	k := string(packageKey(st.Package, st.DebianVersion, rk))
	r := w.recipes[k]
	if r == nil {
		r = new(RecipeSummary)
		if v := w.byPackage.Get([]byte(k)); v != nil {
			var err error
			if *r, err = decodeRecipeSummary(v); err != nil {
				return err
			}
		} else {
			*r = RecipeSummary{RecipeID: st.RecipeID, Package: st.Package, DebianVersion: st.DebianVersion, Suite: st.Suite,
				Arch: st.Arch, Opinion: st.Opinion, SourceSHA256: st.DebianSourceSHA256, ImageDigest: st.ContainerDigest,
				First: st.Timestamp.UTC()}
			w.newRecipes++
		}
		w.recipes[k] = r
	}
	r.Claims++
	switch st.Result {
	case attest.ResultSuccess:
		r.Success++
	case attest.ResultFailed:
		r.Failed++
	case attest.ResultUnreproducible:
		r.Unreproducible++
	case attest.ResultMismatch:
		r.Mismatch++
	}
	if newBuilder {
		r.Builders++
	}
	if voter != nil {
		r.Voters++
		w.voters[k] = append(w.voters[k], voter...)
	}
	if ts := st.Timestamp.UTC(); ts.After(r.Newest) && st.Result != attest.ResultMismatch {
		r.Newest, r.Version = ts, st.Version
	}
	if ts := st.Timestamp.UTC(); ts.Before(r.First) {
		r.First = ts
	}
	return nil
}

func (w *txWriter) updateDigest(pkg, id string) error {
	d := w.digs[pkg]
	if d == nil {
		v, err := decodeDigestOrZero(w.digests.Get([]byte(pkg)))
		if err != nil {
			return err
		}
		d = &v
		w.digs[pkg] = d
	}
	d.Add(id)
	return nil
}

func decodeDigestOrZero(v []byte) (Digest, error) {
	if v == nil {
		return Digest{}, nil
	}
	return decodeDigest(v)
}

func (w *txWriter) updateKey(id, fpr string, ch *checked, proof *Proof) error {
	if proof != nil {
		pv, err := json.Marshal(proof)
		if err != nil {
			return err
		}
		ckB, _ := claimKey(proof.ClaimB)
		if err := w.equiv.Put(cat(ch.fk, ch.rk, ckB), pv); err != nil {
			return err
		}
		w.flagged = append(w.flagged, fpr)
	}
	var ki KeyInfo
	if v := w.keys.Get(ch.fk); v != nil {
		if proof == nil {
			return nil // common case: known key, nothing to change
		}
		var err error
		if ki, err = decodeKeyInfo(v); err != nil {
			return err
		}
		if ki.Equivocating {
			return nil
		}
	} else {
		if len(ch.pub) == 0 {
			// No key material (a claim built by hand, not by Verify/Sign):
			// the record appears with PutKey, which then sets the flag
			// from the stored proofs.
			return nil
		}
		ki = KeyInfo{Fingerprint: fpr, PublicKey: ch.pub, Trust: attest.TrustUnknown, Source: "claim " + id, FirstSeen: w.now, Certifiers: ch.certifiers, Revocation: ch.revocation}
	}
	if proof != nil {
		ki.Equivocating = true
	}
	w.keysChanged = true
	return putKeyInfo(w.keys, ch.fk, ki)
}

// verifyWorkers leaves one core to the writer when there are several: a
// commit is serial, so verification on every core would only slow it.
func verifyWorkers() int {
	return max(1, runtime.GOMAXPROCS(0)-1)
}
