package p2p

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestBuilderOf(t *testing.T) {
	id := testIdentity(t)
	c := testClaim(t, id, "hello", "o3", 1)
	tests := []struct {
		desc string
		raw  []byte
		want string
	}{
		{"canonical envelope", c.Raw, id.Fingerprint()},
		{"not an envelope", []byte(`garbage`), ""},
		{"unterminated payload", []byte(`{"payload":"abc`), ""},
		{"payload not base64", []byte(`{"payload":"!!!!"}`), ""},
		{"payload without builder", []byte(`{"payload":"e30="}`), ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			assert.Equal(t, tc.want, builderOf(tc.raw))
		})
	}
}

func FuzzBuilderOf(f *testing.F) {
	f.Add([]byte(`{"payload":"eyJidWlsZGVyIjoiQUJDIn0="}`))
	f.Add([]byte(`{"payload":"`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got := builderOf(raw); len(got) > 128 {
			t.Fatalf("builderOf returned %d bytes", len(got))
		}
	})
}
