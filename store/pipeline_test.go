package store

import (
	"context"
	"errors"
	"testing"

	"github.com/lebowski-dist/lebowski/attest"
)

// TestVerifyAndIngestChunks: an import larger than one verification chunk
// keeps every result in input order, across chunk boundaries, with bad
// envelopes and duplicates mixed in, and stores exactly the valid claims.
func TestVerifyAndIngestChunks(t *testing.T) {
	keys := testKeys(t, 4)
	n := 3*verifyChunk(1<<20) + 17
	claims := presign(t, n, keys)
	wires := make([][]byte, n+2)
	for i, c := range claims {
		w, err := c.Wire()
		if err != nil {
			t.Fatal(err)
		}
		if i%97 == 5 {
			w = append([]byte(nil), w...)
			w[len(w)/2] ^= 1 // corrupt
		}
		wires[i] = w
	}
	wires[n], wires[n+1] = wires[0], wires[verifyChunk(1<<20)+1] // duplicates in later chunks
	s := mustOpenStore(t)
	res, err := s.VerifyAndIngest(context.Background(), attest.VerifyOptions{}, wires...)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(wires) {
		t.Fatalf("%d results for %d wires", len(res), len(wires))
	}
	stored := 0
	for i, r := range res[:n] {
		switch {
		case i%97 == 5:
			if r.Status != StatusRejected || !errors.Is(r.Err, attest.ErrInvalid) {
				t.Fatalf("wire %d (corrupted): %v %v", i, r.Status, r.Err)
			}
		case r.Status != StatusNew || r.ID != claims[i].ID:
			t.Fatalf("wire %d: status %v id %s, want new %s", i, r.Status, r.ID, claims[i].ID)
		default:
			stored++
		}
	}
	for _, r := range res[n:] {
		if r.Status != StatusDuplicate {
			t.Fatalf("duplicate got %v", r.Status)
		}
	}
	for i, c := range claims {
		if _, ok, err := s.GetRaw(c.ID); err != nil || ok != (i%97 != 5) {
			t.Fatalf("claim %d stored=%v (err %v)", i, ok, err)
		}
	}
	if stored < n*9/10 {
		t.Fatalf("only %d of %d stored", stored, n)
	}
}
