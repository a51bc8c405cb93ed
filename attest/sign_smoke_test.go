package attest

import (
	"testing"
	"time"
)

func testStatement() *Statement {
	s := &Statement{Type: TypeRebuildV1, Package: "hello", Version: "2.10-3~o3+1", DebianVersion: "2.10-3", Suite: "bookworm", Arch: "amd64",
		Opinion:            OpinionRef{Name: "o3", CID: "bafkreiabc", Purity: PurityPureCompilation},
		DebianSourceSHA256: "0000000000000000000000000000000000000000000000000000000000000001",
		ContainerDigest:    "sha256:0000000000000000000000000000000000000000000000000000000000000002",
		Result:             ResultSuccess,
		Artifacts:          []Artifact{{Name: "hello_2.10-3~o3+1_amd64.deb", SHA256: "0000000000000000000000000000000000000000000000000000000000000003"}},
		Timestamp:          time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC)}
	return s
}

func TestSignVerifyRoundTrip(t *testing.T) {
	id, err := GenerateIdentity("t", "t@example.org")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Sign(id, testStatement())
	if err != nil {
		t.Fatal(err)
	}
	wire, err := c.Wire()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(wire, nil, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != c.ID || got.Statement.Builder != id.Fingerprint() {
		t.Fatalf("id %s vs %s", got.ID, c.ID)
	}
	t.Logf("envelope %d bytes (wire %d), id %s", len(c.Raw), len(wire), c.ID)
}
