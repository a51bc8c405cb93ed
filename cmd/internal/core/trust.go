package core

import (
	"sort"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/store"
)

// trustView is the operator's trust in builder keys as consensus sees it:
// the levels kept in the store, the config's trusted_keys, the node's own
// key, and keys certified by voting keys within trust_hops; a key with a
// revocation signature is distrusted whatever else says, and a rotation
// lets its earlier claims count as its successor's. Operator groups voting
// keys into operator clusters for diversity. It is cached until the
// store's keys change (store.KeysVersion).
type trustView struct {
	levels  map[string]attest.Trust
	equiv   map[string]bool
	via     map[string][]string           // certified key → certifying path from a trusted key
	revoked map[string]*attest.Revocation // keys with a revocation signature in effect
	rotated map[string]rotation           // revoked key → the successor its earlier claims count as
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

// trust returns the current trust view, rebuilt only when the store's
// keys changed since the last call.
func (n *Node) trust() (*trustView, error) {
	n.trustMu.Lock()
	defer n.trustMu.Unlock()
	ver := n.st.KeysVersion()
	if n.trustCache != nil && n.trustVer == ver {
		return n.trustCache, nil
	}
	keys, err := n.st.Keys()
	if err != nil {
		return nil, err
	}
	t := n.buildTrust(keys)
	n.trustCache, n.trustVer = t, ver
	certified := make([]string, 0, len(t.via))
	for f := range t.via {
		certified = append(certified, f)
	}
	n.st.SetVoters(certified) // their claims pass the store's budget, as trusted keys' do
	return t, nil
}

// RefreshTrust rebuilds the trust view if the store's keys changed, so
// that a key certified since is exempt from the store's budget before any
// query asks (the daemon calls it periodically).
func (n *Node) RefreshTrust() error {
	_, err := n.trust()
	return err
}

func (n *Node) buildTrust(keys []store.KeyInfo) *trustView {
	t := &trustView{levels: map[string]attest.Trust{}, equiv: map[string]bool{}, via: map[string][]string{},
		revoked: map[string]*attest.Revocation{}, rotated: map[string]rotation{}}
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
	n.revocations(t, keys)
	n.certify(t, keys)
	n.rotations(t)
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
			r = attest.RevocationOf(n.st.Lookup(k.Fingerprint), now)
		}
		if r != nil {
			t.revoked[k.Fingerprint] = r
			t.levels[k.Fingerprint] = attest.TrustDistrusted
		}
	}
}

// rotations lets a revoked key's claims signed before its revocation
// count as its successor's, when the revocation names the successor (and
// is not for a compromised key) and the successor itself votes here. A
// successor rotated in turn passes them on (K → S → S2: K's claims count
// as S2's), up to maxRotationChain steps: each step is signed by the key
// it retires, and only the last key must vote, as for one step.
func (n *Node) rotations(t *trustView) {
	for f, r := range t.revoked {
		if to := t.successor(f, r); to != "" {
			t.rotated[f] = rotation{To: to, At: r.Time}
		}
	}
}

// maxRotationChain bounds the rotations followed from one revoked key.
const maxRotationChain = 16

// successor is the voting key at the end of f's chain of rotations (r is
// f's revocation), or "" when the chain ends in a key that does not vote,
// in a compromised or plain revocation, in a cycle or past
// maxRotationChain steps.
func (t *trustView) successor(f string, r *attest.Revocation) string {
	seen := map[string]bool{f: true}
	for range maxRotationChain {
		if r.Successor == "" || r.Compromised() || seen[r.Successor] {
			return ""
		}
		to := r.Successor
		if r = t.revoked[to]; r == nil {
			if t.votes(to) {
				return to
			}
			return ""
		}
		seen[to] = true
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
	byCertifier := map[string][]string{}
	for _, k := range keys {
		if t.Level(k.Fingerprint).Votes() || t.levels[k.Fingerprint] == attest.TrustDistrusted {
			continue
		}
		for _, c := range k.Certifiers {
			byCertifier[c] = append(byCertifier[c], k.Fingerprint)
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
			signer := n.st.Lookup(certifier)
			if signer == nil {
				continue
			}
			trusted := map[string]*openpgp.Entity{certifier: signer}
			for _, f := range cands {
				if t.Level(f).Votes() {
					continue // already trusted or certified at a shorter distance
				}
				target := n.st.Lookup(f)
				if target == nil || !attest.CertifiedWithin(target, trusted, nil, 1) {
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
