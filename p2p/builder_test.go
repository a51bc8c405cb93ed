package p2p

import (
	"bytes"
	"testing"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/stretchr/testify/assert"
)

func TestWireBuilder(t *testing.T) {
	id := testIdentity(t)
	c := testClaim(t, id, "hello", "o3", 1)
	tests := []struct {
		desc string
		raw  []byte
		want string
	}{
		{"canonical envelope", c.Raw, id.Fingerprint()},
		{"wire envelope with its key first", mustWireOf(t, c), id.Fingerprint()},
		{"not an envelope", []byte(`garbage`), ""},
		{"unterminated payload", []byte(`{"payload":"abc`), ""},
		{"payload not base64", []byte(`{"payload":"!!!!"}`), ""},
		{"payload without builder", []byte(`{"payload":"e30="}`), ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			assert.Equal(t, tc.want, wireBuilder(tc.raw))
		})
	}
}

func FuzzWireBuilder(f *testing.F) {
	f.Add([]byte(`{"payload":"eyJidWlsZGVyIjoiQUJDIn0="}`))
	f.Add([]byte(`{"payload":"`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got := wireBuilder(raw); len(got) > 128 {
			t.Fatalf("builderOf returned %d bytes", len(got))
		}
	})
}

func mustWireOf(t *testing.T, c *attest.Claim) []byte {
	t.Helper()
	w, err := c.Wire()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(w, []byte(`{"key":`)) {
		t.Fatalf("wire envelope no longer starts with its key: %.40s", w)
	}
	return w
}
