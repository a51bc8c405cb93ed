package core

import (
	"crypto/sha256"
	"maps"
	"sort"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/store"
)

// trustView is the operator's trust in builder keys as consensus sees it:
// the levels kept in the store, the config's trusted_keys, the node's own
// key, and keys certified by voting keys within trust_hops; a key with a
// revocation signature is distrusted whatever else says, and a rotation
// lets its earlier claims count as its successor's. Operator groups voting
// keys into operator clusters for diversity. A view is immutable once
// built; Node keeps the last complete one (trust) and builds anew when the
// store's keys change (store.KeysVersion).
type trustView struct {
	levels  map[string]attest.Trust
	equiv   map[string]bool
	via     map[string][]string           // certified key → certifying path from a trusted key
	revoked map[string]*attest.Revocation // keys with a revocation signature in effect
	rotated map[string]rotation           // revoked key → the successor its earlier claims count as
	// unreadable are keys with a voting level whose stored material the
	// key rules now refuse: they do not vote (revocations).
	unreadable map[string]bool
}

// rotation: claims of a revoked key signed before At count as To's.
type rotation struct {
	To string
	At time.Time
}

// countAs is the key a claim by fpr signed at ts counts as: the successor
// of a rotated key for claims signed before the revocation, else fpr.
func (t *trustView) countAs(fpr string, ts time.Time) string {
	if r, ok := t.rotated[fpr]; ok && ts.Before(r.At) {
		return r.To
	}
	return fpr
}

var _ consensus.TrustSource = (*trustView)(nil)

func (t *trustView) Level(f string) attest.Trust {
	if l, ok := t.levels[f]; ok {
		return l
	}
	return attest.TrustUnvetted
}
func (t *trustView) Equivocating(f string) bool { return t.equiv[f] }

// Operator is the operator cluster of a voting key, what consensus counts
// as one operator for diversity (docs/TRUST.md, "Operator diversity"): the
// key the node trusts directly that the key's vote comes from.
//
//   - A key trusted directly (the node's own key, a stored trusted key, a
//     config trusted_keys entry) is its own cluster: its fingerprint.
//   - A certified key is in its certifier's cluster, and so transitively in
//     the cluster of the first key of its certification path (via[f][0]):
//     a key certified by C, which R certified, is in R's cluster, like C.
//
// So a key and every key it certifies, directly or through keys it
// certified, are one operator: Sybil keys certified by one key — or by a
// chain of keys it minted, with trust_hops above 1 — never add an operator,
// and neither do libp2p peer IDs. The number of operators is at most the
// number of keys the node's operator trusts directly. (Clustering by the
// direct certifier, via[f][len-1], would let a certified key mint
// intermediate keys that each anchor a new "operator".) At trust_hops 1
// the first key of the path is the direct certifier.
//
// Keys that do not vote return "": consensus asks only for trusted claims
// (unvetted keys never count towards the score) and falls back to the
// claim's peer ID there.
func (t *trustView) Operator(f string) string {
	if !t.Level(f).Votes() {
		return ""
	}
	if p := t.via[f]; len(p) > 0 {
		return p[0]
	}
	return f
}

// votes reports a non-equivocating key whose level votes.
func (t *trustView) votes(f string) bool { return t.Level(f).Votes() && !t.equiv[f] }

// trustState is one complete trust view and the store's keys version it
// was built from.
type trustState struct {
	view *trustView
	ver  uint64
}

// DefaultTrustWait is how long a reader waits for a trust view rebuild
// already under way before it answers with the last complete view.
const DefaultTrustWait = 20 * time.Millisecond

// trust returns the trust view for readers (info, verify, apt-check, key
// lists). Readers never wait on a slow rebuild: when the store's keys
// changed since the last complete view, a rebuild is started in the
// background (one at a time) and the reader waits for it at most
// n.trustWait, then answers with the last complete view; the new view is
// swapped in when it is ready. Only the very first view is built while
// the caller waits. Writers on this node (key import, trust, certify,
// revoke, claims import) call trustNow instead, so that what they just
// did is in force when they return.
func (n *Node) trust() (*trustView, error) {
	cur := n.trustCur.Load()
	if cur == nil {
		return n.trustNow()
	}
	if cur.ver == n.st.KeysVersion() {
		return cur.view, nil
	}
	done := n.kickTrust()
	if done == nil || time.Duration(n.lastRebuild.Load()) > n.trustWait {
		return cur.view, nil // rebuilds take long now: not worth a wait
	}
	t := time.NewTimer(n.trustWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return n.trustCur.Load().view, nil
}

// trustNow rebuilds the trust view if the store's keys changed and
// returns it: the caller waits for the rebuild.
func (n *Node) trustNow() (*trustView, error) {
	n.trustMu.Lock()
	defer n.trustMu.Unlock()
	if err := n.rebuildTrust(); err != nil {
		return nil, err
	}
	return n.trustCur.Load().view, nil
}

// kickTrust starts a background rebuild unless one runs, and returns a
// channel closed when the running one ends. Background rebuilds keep a
// pause as long as the last rebuild took after each other (at most half
// a core, however fast keys arrive); within the pause it starts none and
// returns nil: readers keep the last view, and the next reader after the
// pause, a local writer (trustNow) or the daemon's periodic RefreshTrust
// brings the view up to date.
func (n *Node) kickTrust() <-chan struct{} {
	n.kickMu.Lock()
	defer n.kickMu.Unlock()
	if n.kickDone != nil {
		return n.kickDone
	}
	if time.Now().UnixNano() < n.nextKick.Load() {
		return nil
	}
	done := make(chan struct{})
	n.kickDone = done
	go func() {
		n.trustMu.Lock()
		err := n.rebuildTrust()
		n.trustMu.Unlock()
		if err != nil {
			n.log.Warn("trust view rebuild", "err", err)
		}
		n.kickMu.Lock()
		n.kickDone = nil
		n.nextKick.Store(time.Now().UnixNano() + n.lastRebuild.Load())
		n.kickMu.Unlock()
		close(done)
	}()
	return done
}

// rebuildTrust builds a new view when the store's keys changed since the
// current one and swaps it in. The caller holds trustMu.
func (n *Node) rebuildTrust() error {
	ver := n.st.KeysVersion()
	if cur := n.trustCur.Load(); cur != nil && cur.ver == ver {
		return nil
	}
	start := time.Now()
	keys, err := n.st.Keys()
	if err != nil {
		return err
	}
	t := n.buildTrust(keys)
	n.trustCur.Store(&trustState{view: t, ver: ver})
	n.lastRebuild.Store(int64(time.Since(start)))
	certified := make([]string, 0, len(t.via))
	for f := range t.via {
		certified = append(certified, f)
	}
	n.st.SetVoters(certified) // their claims pass the store's budget, as trusted keys' do
	return nil
}

// RefreshTrust rebuilds the trust view if the store's keys changed, so
// that a key certified since is exempt from the store's budget before any
// query asks (the daemon calls it periodically).
func (n *Node) RefreshTrust() error {
	_, err := n.trustNow()
	return err
}

// certMemoKey names one certification check: the certified key's stored
// material, the certifier and whether a rotation's acknowledgement is
// asked for.
type certMemoKey struct {
	target    [sha256.Size]byte
	certifier string
	rotation  bool
}

// certAnswer is a remembered check: ok until until (zero: no expiry).
type certAnswer struct {
	ok    bool
	until time.Time
}

// certMemo remembers certification checks in two generations: when the
// current one holds maxCertMemo answers it becomes the old one, and a hit
// there moves back, so a working set up to maxCertMemo is never checked
// again wholesale (a plain reset would make the next rebuild re-verify
// every key at once).
type certMemo struct {
	cur, old map[certMemoKey]certAnswer
}

// maxCertMemo bounds one generation of the memo: twice the default pool
// of keys that do not vote (store.DefaultBudget.PoolKeys), each of which
// may name a voting key as its certifier.
const maxCertMemo = 1 << 18

func (m *certMemo) get(k certMemoKey, now time.Time) (bool, bool) {
	a, ok := m.cur[k]
	if !ok {
		if a, ok = m.old[k]; ok {
			m.put(k, a)
		}
	}
	if !ok || (!a.until.IsZero() && !now.Before(a.until)) {
		return false, false // unknown, or a certification that has expired since
	}
	return a.ok, true
}

func (m *certMemo) put(k certMemoKey, a certAnswer) {
	if m.cur == nil || len(m.cur) >= maxCertMemo {
		m.old, m.cur = m.cur, make(map[certMemoKey]certAnswer)
	}
	m.cur[k] = a
}

func (m *certMemo) len() int { return len(m.cur) + len(m.old) }

// certifiedBy reports whether certifier's key validly certifies the key
// whose stored material is pub (attest.CertifiedBy; with rotation, only an
// acknowledgement of a rotation counts), remembering the answer across
// rebuilds: a certification is checked once per distinct key material,
// not at every rebuild, and again once it expires. The caller holds
// trustMu.
func (n *Node) certifiedBy(pub []byte, certifier string, rotation bool) bool {
	now := n.now()
	k := certMemoKey{target: sha256.Sum256(pub), certifier: certifier, rotation: rotation}
	if ok, known := n.certMemo.get(k, now); known {
		return ok
	}
	signer := n.st.Lookup(certifier)
	if signer == nil {
		return false // not remembered: the certifier's key may come later
	}
	// The material the answer is remembered under, not whatever the store
	// holds by now; the certifier's primary key is fixed by its fingerprint.
	target, err := attest.ParsePublicKey(pub)
	if err != nil {
		n.certMemo.put(k, certAnswer{})
		return false
	}
	ok, until := attest.CertifiedBy(target, signer, now, rotation)
	n.certMemo.put(k, certAnswer{ok: ok, until: until})
	return ok
}

func (n *Node) buildTrust(keys []store.KeyInfo) *trustView {
	t := &trustView{levels: map[string]attest.Trust{}, equiv: map[string]bool{}, via: map[string][]string{},
		revoked: map[string]*attest.Revocation{}, rotated: map[string]rotation{}, unreadable: map[string]bool{}}
	for _, k := range keys {
		t.levels[k.Fingerprint] = k.Trust.Normalize()
		if k.Equivocating {
			t.equiv[k.Fingerprint] = true
		}
	}
	for _, f := range n.trusted {
		if t.levels[f] != attest.TrustDistrusted {
			t.levels[f] = attest.TrustTrusted
		}
	}
	if n.id != nil {
		t.levels[n.id.Fingerprint()] = attest.TrustOwn
	}
	before := maps.Clone(t.levels) // what each key was before any revocation
	n.revocations(t, keys)
	n.certify(t, keys)
	n.rotations(t, keys, before)
	return t
}

// revocations makes every key with a revocation signature in effect
// distrusted — its own, a trusted or a config-trusted key too: a
// revocation wins over any level and any certification path. The store
// records revocations when it writes a key (KeyInfo.Revocation); keys
// that would vote are also checked on their key material, for records
// written before revocations were recorded.
func (n *Node) revocations(t *trustView, keys []store.KeyInfo) {
	now := n.now().Add(attest.DefaultSkew) // as the store: clocks differ
	for _, k := range keys {
		r := k.Revocation
		if r == nil && t.Level(k.Fingerprint).Votes() {
			e := n.st.Lookup(k.Fingerprint)
			if e == nil && len(k.PublicKey) > 0 {
				// Stored before the key rules (attest/keycost.go) refused
				// its kind: its revocations cannot be read, so it cannot
				// vote. Re-importing a supported key mends it.
				t.levels[k.Fingerprint] = attest.TrustUnvetted
				t.unreadable[k.Fingerprint] = true
				continue
			}
			r = attest.RevocationOf(e, now)
		}
		if r != nil {
			t.revoked[k.Fingerprint] = r
			t.levels[k.Fingerprint] = attest.TrustDistrusted
		}
	}
}

// rotations lets a revoked key's claims signed before its revocation
// count as its successor's (docs/TRUST.md, "Rotation"). A link K → S of
// a rotation counts only when
//
//   - K's revocation names S and is not for a compromised key;
//   - K itself voted here before its revocation (votedBefore): a rotation
//     passes on a vote, so a key that had none here has nothing to pass
//     on, and a stranger's revocation naming a trusted key as its
//     successor changes nothing;
//   - S acknowledges K: S's key certifies K with the RotationNotation
//     naming K (attest.AcknowledgeRotation; checked by attest.CertifiedBy
//     on K's stored key, K's revocation notwithstanding) — the new key
//     signs the old one, as in OpenPGP key transition statements. An
//     ordinary certification (S once vouched for K) is not consent. Nobody
//     can make a key another operator holds the heir of theirs.
//
// A successor rotated in turn passes them on (K → S → S2: K's claims
// count as S2's), every link checked alike, up to maxRotationChain
// links; the last key must vote now.
func (n *Node) rotations(t *trustView, keys []store.KeyInfo, before map[string]attest.Trust) {
	byFpr := make(map[string]*store.KeyInfo, len(t.revoked))
	for i := range keys {
		if _, ok := t.revoked[keys[i].Fingerprint]; ok {
			byFpr[keys[i].Fingerprint] = &keys[i]
		}
	}
	link := func(from, to string) bool {
		k := byFpr[from]
		return k != nil && n.votedBefore(t, k, before) && n.certifiedBy(k.PublicKey, to, true)
	}
	for f, r := range t.revoked {
		if to := t.successor(f, r, link); to != "" {
			t.rotated[f] = rotation{To: to, At: r.Time}
		}
	}
}

// votedBefore reports whether the revoked key k voted here before its
// revocation: its level then (before: stored, config, own) votes, or a
// key that votes now certifies it within trust_hops; never an
// equivocating key or one the operator distrusts.
func (n *Node) votedBefore(t *trustView, k *store.KeyInfo, before map[string]attest.Trust) bool {
	f := k.Fingerprint
	switch {
	case t.equiv[f] || before[f] == attest.TrustDistrusted:
		return false
	case before[f].Votes():
		return true
	}
	// Not the successor's own certification: that acknowledges the
	// rotation, it is no standing K had here.
	succ := t.revoked[f].Successor
	for _, c := range k.Certifiers {
		if c != succ && t.votes(c) && len(t.via[c]) < n.hops && n.certifiedBy(k.PublicKey, c, false) {
			return true
		}
	}
	return false
}

// maxRotationChain bounds the rotations followed from one revoked key.
const maxRotationChain = 16

// successor is the voting key at the end of f's chain of rotations (r is
// f's revocation), or "" when the chain ends in a key that does not vote,
// in a compromised or plain revocation, in a link that does not count
// (link: rotations), in a cycle or past maxRotationChain steps.
func (t *trustView) successor(f string, r *attest.Revocation, link func(from, to string) bool) string {
	seen := map[string]bool{f: true}
	for range maxRotationChain {
		if r.Successor == "" || r.Compromised() || seen[r.Successor] || !link(f, r.Successor) {
			return ""
		}
		f = r.Successor
		if r = t.revoked[f]; r == nil {
			if t.votes(f) {
				return f
			}
			return ""
		}
		seen[f] = true
	}
	return ""
}

// certify marks keys certified (OpenPGP certification signatures, checked
// cryptographically by attest.CertifiedWithin) by a voting key, hop by hop
// up to n.hops. Candidates come from the store's certifier index, so the
// cost grows with the certified keys, not with all keys; unvetted keys
// never create trust, a distrusted key is never certified, and cycles end
// because a key is certified at most once. Each hop takes its certifiers
// in fingerprint order, so a key certified by several at the same
// distance gets the same path (and operator cluster, Operator) on every
// rebuild, whatever the map order.
func (n *Node) certify(t *trustView, keys []store.KeyInfo) {
	if n.hops <= 0 {
		return
	}
	now := n.now().Add(attest.DefaultSkew) // as the store: clocks differ
	byCertifier := map[string][]*store.KeyInfo{}
	for i := range keys {
		k := &keys[i]
		if t.Level(k.Fingerprint).Votes() || t.levels[k.Fingerprint] == attest.TrustDistrusted {
			continue
		}
		for _, c := range k.Certifiers {
			byCertifier[c] = append(byCertifier[c], k)
		}
	}
	if len(byCertifier) == 0 {
		return
	}
	var frontier []string
	for f := range t.levels {
		if t.votes(f) {
			frontier = append(frontier, f)
		}
	}
	for hop := 1; hop <= n.hops && len(frontier) > 0; hop++ {
		sort.Strings(frontier)
		var next []string
		for _, certifier := range frontier {
			cands := byCertifier[certifier]
			if len(cands) == 0 {
				continue
			}
			for _, k := range cands {
				f := k.Fingerprint
				if t.Level(f).Votes() {
					continue // already trusted or certified at a shorter distance
				}
				if !n.certifiedBy(k.PublicKey, certifier, false) {
					continue
				}
				// A revocation the record missed (dated beyond the skew when
				// it was written) still wins.
				if attest.RevocationOf(n.st.Lookup(f), now) != nil {
					continue
				}
				t.levels[f] = attest.TrustCertified
				t.via[f] = append(append([]string(nil), t.via[certifier]...), certifier)
				if !t.equiv[f] {
					next = append(next, f)
				}
			}
		}
		frontier = next
	}
}
