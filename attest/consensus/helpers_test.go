package consensus

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// now is the evaluation time of every test.
var now = time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC)

const (
	debName = "hello_2.10-3~o3+1_amd64.deb"
	dbgName = "hello-dbgsym_2.10-3~o3+1_amd64.deb"
)

// fpr returns test key i's fingerprint (40 upper-case hex digits).
func fpr(i int) string { return fmt.Sprintf("%040X", i) }

// sum is the hex sha256 of s.
func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// debHash is the .deb hash a build of variant v produces.
func debHash(v string) string { return sum(v + "/deb") }

// world is the recipe every test claim is about.
type world struct {
	purity  vocab.Purity
	vanilla bool
	cid     string // opinion CID, part of the recipe; "" = "bafyo3"
}

var pure = world{purity: vocab.PurityPureCompilation}

// base returns a statement for the world's recipe without result fields.
func (w world) base() attest.Statement {
	s := attest.Statement{
		Type: attest.TypeRebuildV1, Package: "hello", Version: "2.10-3~o3+1", DebianVersion: "2.10-3",
		Suite: "bookworm", Arch: "amd64",
		Opinion:            attest.OpinionRef{Name: "o3", CID: "bafyo3", Purity: w.purity},
		DebianSourceSHA256: sum("dsc"), ContainerDigest: "sha256:" + sum("image"),
	}
	if w.cid != "" {
		s.Opinion.CID = w.cid
	}
	if w.vanilla {
		s.Opinion = attest.OpinionRef{}
		s.Version = "2.10-3"
	}
	s.RecipeID = s.Recipe().ID()
	return s
}

// variantByHash maps each .deb hash a test claim carries back to its variant.
var variantByHash = map[string]string{}

// spec describes one claim compactly.
type spec struct {
	key     int
	result  attest.Result // "" = success
	variant string        // artifact variant for success ("" = "A")
	age     time.Duration // before now
	peer    string
}

func (w world) claim(sp spec) Claim {
	s := w.base()
	s.Builder = fpr(sp.key)
	s.PeerID = sp.peer
	s.Timestamp = now.Add(-sp.age)
	s.Result = sp.result
	if s.Result == "" {
		s.Result = attest.ResultSuccess
	}
	if s.Result == attest.ResultSuccess {
		v := sp.variant
		if v == "" {
			v = "A"
		}
		variantByHash[debHash(v)] = v
		s.Artifacts = []attest.Artifact{{Name: dbgName, SHA256: sum(v + "/dbg")}, {Name: debName, SHA256: debHash(v)}}
	}
	id := sum(fmt.Sprintf("%s|%s|%s|%s|%d", s.Builder, s.Result, sp.variant, s.Timestamp, len(sp.peer)))
	return Claim{ID: id, Statement: &s, Received: s.Timestamp.Add(time.Minute)}
}

func (w world) claims(specs ...spec) []Claim {
	out := make([]Claim, 0, len(specs))
	for _, sp := range specs {
		out = append(out, w.claim(sp))
	}
	return out
}

// trusting returns a StaticTrust where keys ids are Trusted, each with its
// own operator "op<i>" unless ops overrides it.
func trusting(ids ...int) StaticTrust {
	t := StaticTrust{Levels: map[string]attest.Trust{}, Equivocators: map[string]bool{}, Operators: map[string]string{}}
	for _, i := range ids {
		t.Levels[fpr(i)] = attest.TrustTrusted
		t.Operators[fpr(i)] = fmt.Sprintf("op%d", i)
	}
	return t
}

// agreeing returns n fresh success claims for variant A by keys first..first+n-1.
func agreeing(w world, first, n int, age time.Duration) []Claim {
	var out []Claim
	for i := first; i < first+n; i++ {
		out = append(out, w.claim(spec{key: i, age: age}))
	}
	return out
}

func seq(first, n int) []int {
	var out []int
	for i := first; i < first+n; i++ {
		out = append(out, i)
	}
	return out
}

// with returns a copy of base with more appended (never aliases base).
func with(base []Claim, more ...Claim) []Claim {
	return append(append(make([]Claim, 0, len(base)+len(more)), base...), more...)
}
