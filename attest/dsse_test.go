package attest_test

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	prov "github.com/in-toto/attestation/go/predicates/provenance/v1"
	ita1 "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// The in-toto view of a claim, signed in a DSSE envelope, validates
// against the in-toto project's own Statement v1 and SLSA provenance v1
// types (their protobuf definitions and Validate methods), and the
// envelope's signature checks; one flipped payload byte breaks it.
func TestInTotoDSSEValidates(t *testing.T) {
	ids := attesttest.Fresh(t, 2)
	c := attesttest.Claim(t, ids[0], func(s *attest.Statement) {
		s.BuildinfoCID = vocab.CID([]byte("buildinfo"))
		s.LogCID = vocab.CID([]byte("log"))
		s.LockCID = vocab.CID([]byte("lock"))
	})
	payload, err := c.InToto()
	if err != nil {
		t.Fatal(err)
	}
	env, err := attest.SignDSSE(ids[0], attest.PayloadTypeInToto, payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var back attest.DSSEEnvelope
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	got, err := attest.VerifyDSSE(&back, ids[0].Entity)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if _, err := attest.VerifyDSSE(&back, ids[1].Entity); err == nil {
		t.Fatal("another key verified the envelope")
	}

	var st ita1.Statement
	if err := protojson.Unmarshal(got, &st); err != nil {
		t.Fatalf("not an in-toto Statement v1: %v\n%s", err, got)
	}
	if err := st.Validate(); err != nil {
		t.Fatalf("in-toto Statement v1: %v", err)
	}
	if st.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Fatalf("predicate type %q", st.PredicateType)
	}
	pb, err := protojson.Marshal(st.Predicate)
	if err != nil {
		t.Fatal(err)
	}
	var p prov.Provenance
	if err := protojson.Unmarshal(pb, &p); err != nil {
		t.Fatalf("not SLSA provenance v1: %v", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("SLSA provenance v1: %v", err)
	}
	if p.RunDetails.Builder.Id != "openpgp:"+ids[0].Fingerprint() {
		t.Fatalf("builder id %q", p.RunDetails.Builder.Id)
	}

	flipped := back
	b, _ := base64.StdEncoding.DecodeString(back.Payload)
	b[len(b)/2] ^= 1
	flipped.Payload = base64.StdEncoding.EncodeToString(b)
	if _, err := attest.VerifyDSSE(&flipped, ids[0].Entity); err == nil {
		t.Fatal("a flipped payload byte verified")
	}
}
