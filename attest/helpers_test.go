package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Test identities are generated once per test binary: Ed25519 key
// generation is cheap, but sharing keeps fuzz iterations fast.
var (
	idOnce       sync.Once
	idA, idB     *Identity
	errIdentites error
)

func testIdentities(tb testing.TB) (a, b *Identity) {
	tb.Helper()
	idOnce.Do(func() {
		idA, errIdentites = GenerateIdentity("Builder A", "a@example.org")
		if errIdentites == nil {
			idB, errIdentites = GenerateIdentity("Builder B", "b@example.org")
		}
	})
	if errIdentites != nil {
		tb.Fatalf("generate identities: %v", errIdentites)
	}
	return idA, idB
}

// testStatement is a valid success statement (RecipeID filled in).
func testStatement() *Statement {
	s := &Statement{Type: TypeRebuildV1, Package: "hello", Version: "2.10-3~o3+1", DebianVersion: "2.10-3", Suite: "bookworm", Arch: "amd64",
		Opinion:            OpinionRef{Name: "o3", CID: "bafkreiabc", Commit: "abc123", Purity: vocab.PurityPureCompilation},
		DebianSourceSHA256: strings.Repeat("01", 32),
		ContainerDigest:    "sha256:" + strings.Repeat("02", 32),
		Result:             ResultSuccess,
		Artifacts: []Artifact{
			{Name: "hello_2.10-3~o3+1_amd64.deb", SHA256: strings.Repeat("03", 32)},
			{Name: "hello-dbgsym_2.10-3~o3+1_amd64.deb", SHA256: strings.Repeat("04", 32)},
		},
		BuildinfoCID: "bafkreibuildinfo",
		LogCID:       "bafkreilog",
		PeerID:       "12D3KooWExample",
		Builder:      strings.Repeat("A", 40),
		Timestamp:    time.Now().UTC().Add(-time.Hour).Truncate(time.Second),
	}
	s.RecipeID = s.Recipe().ID()
	return s
}

// mustSign signs testStatement (after mutate) with id.
func mustSign(tb testing.TB, id *Identity, mutate func(*Statement)) *Claim {
	tb.Helper()
	s := testStatement()
	if mutate != nil {
		mutate(s)
	}
	c, err := Sign(id, s)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return c
}

func mustWire(tb testing.TB, c *Claim) []byte {
	tb.Helper()
	w, err := c.Wire()
	if err != nil {
		tb.Fatalf("wire: %v", err)
	}
	return w
}

// signBytes makes a canonical armored detached signature over arbitrary
// bytes, bypassing Sign's validation, to build hostile envelopes whose
// signature is genuinely valid.
func signBytes(tb testing.TB, id *Identity, payload []byte) string {
	tb.Helper()
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, id.Entity, bytes.NewReader(payload), pgpConfig()); err != nil {
		tb.Fatalf("detach sign: %v", err)
	}
	a, err := armorSignature(sig.Bytes())
	if err != nil {
		tb.Fatalf("armor: %v", err)
	}
	return a
}

// statementJSON marshals s canonically with Builder forced to fpr.
func statementJSON(tb testing.TB, s *Statement) []byte {
	tb.Helper()
	b, err := s.Canonical()
	if err != nil {
		tb.Fatalf("canonical: %v", err)
	}
	return b
}

func encodeEnvelope(tb testing.TB, e *Envelope) []byte {
	tb.Helper()
	b, err := e.Encode()
	if err != nil {
		tb.Fatalf("encode envelope: %v", err)
	}
	return b
}

// checkErr asserts err is non-nil, unwraps to ErrInvalid and, when want is
// set, to want as well.
func checkErr(tb testing.TB, err error, want error) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("accepted, want rejection (%v)", want)
	}
	if !errors.Is(err, ErrInvalid) {
		tb.Errorf("error %q does not unwrap to ErrInvalid", err)
	}
	if want != nil && !errors.Is(err, want) {
		tb.Errorf("error %q does not unwrap to %q", err, want)
	}
}

// jsonEdit decodes b into a generic map, applies f and re-encodes
// (non-canonically: Go's default, which sorts keys but escapes HTML).
func jsonEdit(tb testing.TB, b []byte, f func(m map[string]any)) []byte {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatalf("unmarshal: %v", err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	return out
}
