package attest

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// signedVariants are claims covering every optional field set and unset.
func signedVariants(tb testing.TB) []*Claim {
	a, b := testIdentities(tb)
	art := []Artifact{{Name: "x.deb", SHA256: strings.Repeat("0a", 32)}}
	muts := []func(*Statement){
		nil,
		func(s *Statement) { s.BuildinfoCID, s.LogCID, s.PeerID, s.Opinion.Commit = "", "", "", "" },
		func(s *Statement) { s.LockCID = "bafkreilock"; s.Reason = "tests failed: ünïcode ok" },
		func(s *Statement) {
			s.Result = ResultFailed
			s.Artifacts = nil
			s.Reason = "build timed out after 2h0m0s"
		},
		func(s *Statement) {
			s.Result = ResultUnreproducible
			s.SecondArtifacts = art
			s.DiffoscopeCID = "bafkreidiff"
		},
		func(s *Statement) { s.Result = ResultMismatch; s.Expected = art },
	}
	var out []*Claim
	for i, m := range muts {
		id := a
		if i%2 == 1 {
			id = b
		}
		c, err := Sign(id, mutated(m))
		if err != nil {
			// a mutation Validate refuses is not a variant to test
			continue
		}
		out = append(out, c)
	}
	if len(out) < 4 {
		tb.Fatalf("only %d of %d variants could be signed", len(out), len(muts))
	}
	return out
}

func mutated(m func(*Statement)) *Statement {
	s := testStatement()
	if m != nil {
		m(s)
		s.RecipeID = s.Recipe().ID()
	}
	return s
}

// TestFastPathsAcceptSignedClaims: what Sign produces takes the fast path
// (otherwise the fast path is dead code and Verify silently slow), and
// gives the same claim as the encoding/json path.
func TestFastPathsAcceptSignedClaims(t *testing.T) {
	for _, c := range signedVariants(t) {
		wire := mustWire(t, c)
		for _, in := range [][]byte{wire, c.Raw} {
			e, raw, ok := parseCanonicalEnvelope(in)
			if !ok {
				t.Fatalf("canonical envelope not taken by the fast path: %.200s", in)
			}
			if !bytes.Equal(raw, c.Raw) {
				t.Fatalf("fast Raw differs:\n%s\n%s", raw, c.Raw)
			}
			checkEnvelopeSame(t, in, e)
		}
		st, ok := parseCanonicalStatement(c.Envelope.Payload)
		if !ok {
			t.Fatalf("canonical statement not taken by the fast path: %s", c.Envelope.Payload)
		}
		checkStatementSame(t, c.Envelope.Payload, st)
		x, y := *st, *c.Statement
		if !x.Timestamp.Equal(y.Timestamp) {
			t.Fatalf("timestamp %v, signed %v", x.Timestamp, y.Timestamp)
		}
		x.Timestamp, y.Timestamp = time.Time{}, time.Time{}
		if y.Artifacts == nil {
			y.Artifacts = []Artifact{} // Canonical writes nil as []
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("fast statement differs from the signed one:\n%+v\n%+v", x, y)
		}
		payload, sig, ok := SplitEnvelope(c.Raw)
		if !ok {
			t.Fatalf("SplitEnvelope refused a claim's Raw bytes")
		}
		if _, raw := JoinEnvelope(payload, sig); !bytes.Equal(raw, c.Raw) {
			t.Fatalf("JoinEnvelope does not rebuild Raw:\n%s\n%s", raw, c.Raw)
		}
		body, ok := dearmorFast(c.Envelope.Signature)
		if !ok {
			t.Fatalf("canonical armor not taken by the fast path: %q", c.Envelope.Signature)
		}
		slow, err := dearmor(c.Envelope.Signature)
		if err != nil || !bytes.Equal(body, slow) {
			t.Fatalf("fast dearmor differs from go-crypto: %v", err)
		}
	}
}

// TestFastPathsFallBack: inputs outside the canonical layout are left to
// encoding/json, which still accepts the valid ones or names the fault.
func TestFastPathsFallBack(t *testing.T) {
	a, _ := testIdentities(t)
	c := mustSign(t, a, nil)
	wire := mustWire(t, c)
	spaced := bytes.Replace(wire, []byte(`{"key"`), []byte(`{ "key"`), 1)
	for name, in := range map[string][]byte{
		"leading space": append([]byte(" "), wire...),
		"inner space":   spaced,
		"trailing nl":   append(append([]byte{}, wire...), '\n'),
		"empty key":     bytes.Replace(wire, []byte(`"key":"`), []byte(`"key":"","x":"`), 1),
	} {
		if _, _, ok := parseCanonicalEnvelope(in); ok {
			t.Errorf("%s: fast path accepted a non-canonical envelope", name)
		}
	}
	// A non-canonical but valid envelope still verifies, with the same ID.
	got, err := Verify(spaced, NewKeyring(a.Entity), VerifyOptions{})
	if err != nil || got.ID != c.ID {
		t.Fatalf("spaced envelope: %v (id %v want %s)", err, got, c.ID)
	}
	// A statement with an escaped character: slow path, still canonical.
	esc := mustSign(t, a, func(s *Statement) { s.Reason = `said "no"` })
	if _, ok := parseCanonicalStatement(esc.Envelope.Payload); ok {
		t.Fatal("fast path accepted an escaped string")
	}
	if _, err := Verify(mustWire(t, esc), NewKeyring(a.Entity), VerifyOptions{}); err != nil {
		t.Fatalf("statement with an escape: %v", err)
	}
}

// TestArmorFastMatchesGoCrypto: armorFast writes the bytes go-crypto's
// armor writer does, for every length around the line breaks.
func TestArmorFastMatchesGoCrypto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 400 {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
		want, err := armorSignature(body)
		if err != nil {
			t.Fatal(err)
		}
		if got := armorFast(body); got != want {
			t.Fatalf("len %d:\ngot  %q\nwant %q", n, got, want)
		}
		back, ok := dearmorFast(want)
		if !ok || !bytes.Equal(back, body) {
			t.Fatalf("len %d: dearmorFast does not invert armorFast", n)
		}
	}
}

// FuzzFastPathsMatchJSON is the differential test of the fast parsers:
// whatever one accepts, the encoding/json path accepts with the same
// value, and that value's canonical encoding is the input.
func FuzzFastPathsMatchJSON(f *testing.F) {
	for _, c := range signedVariants(f) {
		f.Add(mustWire(f, c))
		f.Add(c.Raw)
		f.Add(c.Envelope.Payload)
		f.Add([]byte(c.Envelope.Signature))
	}
	f.Add([]byte(`{"payload":"","payload_type":"","signature":""}`))
	f.Add([]byte(`{"arch":"","artifacts":[],"builder":"","container_digest":"","debian_source_sha256":"","debian_version":"","opinion":{"cid":"","name":"","purity":""},"package":"","recipe_id":"","result":"","suite":"","timestamp":"0001-01-01T00:00:00Z","type":"","version":""}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if e, raw, ok := parseCanonicalEnvelope(in); ok {
			checkEnvelopeSame(t, in, e)
			want, err := canonicalEnvelope(e.WithoutKey())
			if err != nil || !bytes.Equal(raw, want) {
				t.Fatalf("fast Raw %q, canonical without key %q (%v)", raw, want, err)
			}
		}
		if st, ok := parseCanonicalStatement(in); ok {
			checkStatementSame(t, in, st)
		}
		if payload, sig, ok := SplitEnvelope(in); ok {
			if env, raw := JoinEnvelope(payload, sig); !bytes.Equal(raw, in) {
				t.Fatalf("JoinEnvelope(SplitEnvelope(x)) != x:\n%q\n%q", raw, in)
			} else {
				checkEnvelopeSame(t, in, env)
			}
		}
		if body, ok := dearmorFast(string(in)); ok {
			slow, err := dearmor(string(in))
			if err != nil || !bytes.Equal(body, slow) {
				t.Fatalf("dearmorFast accepted what go-crypto does not decode the same: %v", err)
			}
		}
	})
}

func checkEnvelopeSame(t *testing.T, in []byte, e *Envelope) {
	t.Helper()
	slow, err := decodeEnvelopeJSON(in)
	if err != nil {
		t.Fatalf("fast path accepted an envelope encoding/json refuses: %v\n%q", err, in)
	}
	if !bytes.Equal(slow.Key, e.Key) || !bytes.Equal(slow.Payload, e.Payload) ||
		slow.PayloadType != e.PayloadType || slow.Signature != e.Signature {
		t.Fatalf("fast and json envelopes differ:\n%+v\n%+v", e, slow)
	}
	again, err := canonicalEnvelope(e)
	if err != nil || !bytes.Equal(again, in) {
		t.Fatalf("fast path accepted a non-canonical envelope:\nin  %q\nout %q", in, again)
	}
}

func checkStatementSame(t *testing.T, in []byte, st *Statement) {
	t.Helper()
	slow, err := decodeStatementJSON(in)
	if err != nil {
		t.Fatalf("fast path accepted a statement the json path refuses: %v\n%q", err, in)
	}
	if !st.Timestamp.Equal(slow.Timestamp) || st.Timestamp.Location().String() != slow.Timestamp.Location().String() {
		t.Fatalf("timestamps differ: %v vs %v", st.Timestamp, slow.Timestamp)
	}
	a, b := *st, *slow
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("fast and json statements differ:\n%+v\n%+v", a, b)
	}
}
