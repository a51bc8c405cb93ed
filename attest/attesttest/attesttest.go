// Package attesttest is the shared test kit: builder identities generated
// once per test binary, a factory for valid statements and signed claims,
// and an eventually-style wait. Tests of every package use it instead of
// writing their own (bbolt's internal/btesting plays this part).
package attesttest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

var (
	poolMu sync.Mutex
	pool   []*attest.Identity
)

// Identities returns n builder identities shared by every test of the
// binary (key generation is the slow part of a claim). Index i is always
// the same key; identity i is named "builder i".
func Identities(tb testing.TB, n int) []*attest.Identity {
	tb.Helper()
	poolMu.Lock()
	defer poolMu.Unlock()
	for len(pool) < n {
		i := len(pool)
		id, err := attest.GenerateIdentity(fmt.Sprintf("builder %d", i), fmt.Sprintf("b%d@example.org", i))
		if err != nil {
			tb.Fatalf("attesttest: generate identity: %v", err)
		}
		pool = append(pool, id)
	}
	return append([]*attest.Identity(nil), pool[:n]...)
}

// Fresh returns n new identities that no other test holds (Sybil keys,
// keys that get certified or distrusted), generated on 4 goroutines.
func Fresh(tb testing.TB, n int) []*attest.Identity {
	tb.Helper()
	out := make([]*attest.Identity, n)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				if out[i], errs[w] = attest.GenerateIdentity(fmt.Sprintf("fresh %d", i), ""); errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatalf("attesttest: generate identity: %v", err)
		}
	}
	return out
}

// Hex is the hex sha256 of the parts printed together: a stable fake hash.
func Hex(parts ...any) string {
	h := sha256.Sum256([]byte(fmt.Sprint(parts...)))
	return hex.EncodeToString(h[:])
}

// Shipped hello/o3 coordinates the factory defaults to.
const (
	Package       = "hello"
	DebianVersion = "2.10-3"
	Opinion       = "o3"
	Suite         = "bookworm"
	Arch          = "amd64"
)

// BinaryVersion of the default statement: 2.10-3~o3+1.
var BinaryVersion = vocab.BinaryVersion{Debian: DebianVersion, Opinion: Opinion, Revision: 1}.String()

// DebName is the artifact name of the default statement.
var DebName = "hello_" + BinaryVersion + "_amd64.deb"

// OpinionCID is a fixed opinion CID for the default statement.
var OpinionCID = vocab.CID([]byte("hello/o3 opinion"))

// Statement returns a valid success statement for hello/o3 (one artifact
// whose hash is Hex("deb"), timestamp a minute ago), changed by each mod
// in turn; the recipe ID is computed last, so mods may change any recipe
// field.
func Statement(mods ...func(*attest.Statement)) *attest.Statement {
	s := &attest.Statement{
		Type: attest.TypeRebuildV1, Package: Package, Version: BinaryVersion, DebianVersion: DebianVersion,
		Suite: Suite, Arch: Arch,
		Opinion:            attest.OpinionRef{Name: Opinion, CID: OpinionCID, Purity: vocab.PurityPureCompilation},
		DebianSourceSHA256: Hex("src"), ContainerDigest: "sha256:" + Hex("img"),
		Result: attest.ResultSuccess, Artifacts: []attest.Artifact{{Name: DebName, SHA256: Hex("deb")}},
		Timestamp: time.Now().Add(-time.Minute).UTC().Truncate(time.Second),
	}
	for _, m := range mods {
		m(s)
	}
	s.RecipeID = s.Recipe().ID()
	return s
}

// Artifact sets the one artifact's hash.
func Artifact(sha string) func(*attest.Statement) {
	return func(s *attest.Statement) { s.Artifacts = []attest.Artifact{{Name: DebName, SHA256: sha}} }
}

// Sign signs st with id (the builder field is set by attest.Sign).
func Sign(tb testing.TB, id *attest.Identity, st *attest.Statement) *attest.Claim {
	tb.Helper()
	c, err := attest.Sign(id, st)
	if err != nil {
		tb.Fatalf("attesttest: sign: %v", err)
	}
	return c
}

// Claim signs Statement(mods...) with id.
func Claim(tb testing.TB, id *attest.Identity, mods ...func(*attest.Statement)) *attest.Claim {
	tb.Helper()
	return Sign(tb, id, Statement(mods...))
}

// Wire is the claim's wire envelope (with the signer key).
func Wire(tb testing.TB, c *attest.Claim) []byte {
	tb.Helper()
	w, err := c.Wire()
	if err != nil {
		tb.Fatalf("attesttest: wire: %v", err)
	}
	return w
}

// Eventually polls cond every 20 ms until it holds, and fails the test
// with what when d passes first. It returns how long it waited.
func Eventually(tb testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > d {
			tb.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
