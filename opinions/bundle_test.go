package opinions

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// TestBundleTravels: an opinion with a patch and a lock, written from its
// bundle into an empty directory, loads with the same CID; a bundle whose
// bytes do not match the CID is refused and nothing is written.
func TestBundleTravels(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src)
	lock := testLock()
	lock.Opinion = "greeting"
	if err := os.WriteFile(filepath.Join(src, "hello", "greeting.lock"), lock.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := Load(filepath.Join(src, "hello", "greeting.yaml"), WithGitCommit(false))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Patches) == 0 || o.Lock == nil {
		t.Fatal("test opinion should have a patch and a lock")
	}
	bundle := o.Canonical()

	dst := t.TempDir()
	got, err := WriteBundle(dst, o.CID(), bundle)
	if err != nil {
		t.Fatalf("WriteBundle: %v", err)
	}
	if got.CID() != o.CID() || !bytes.Equal(got.Canonical(), bundle) {
		t.Fatalf("fetched opinion has CID %s, want %s", got.CID(), o.CID())
	}
	if !bytes.Equal(got.PatchData(o.Patches[0].Path), o.PatchData(o.Patches[0].Path)) || got.Lock == nil {
		t.Fatal("patch or lock lost")
	}
	if _, err := Find(dst, "hello/greeting"); err != nil {
		t.Fatalf("a fetched opinion is found like a local one: %v", err)
	}
	// Idempotent.
	if _, err := WriteBundle(dst, o.CID(), bundle); err != nil {
		t.Fatalf("second write: %v", err)
	}

	for _, tc := range []struct {
		desc string
		cid  string
		data []byte
	}{
		{"bytes do not match the CID", o.CID(), bytes.Replace(bundle, []byte("Lebowski"), []byte("Lebowsky"), 1)},
		{"a valid bundle under another CID", vocab.CID([]byte("x")), bundle},
		{"garbage with its own CID", vocab.CID([]byte("{not json")), []byte("{not json")},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			empty := t.TempDir()
			_, err := WriteBundle(empty, tc.cid, tc.data)
			if !errors.Is(err, ErrBundle) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrBundle", err)
			}
			entries, _ := os.ReadDir(empty)
			if len(entries) != 0 {
				t.Fatalf("refused bundle left %d entries", len(entries))
			}
		})
	}
}

func FuzzWriteBundle(f *testing.F) {
	f.Add([]byte(`{"type":"lebowski.opinion/v2","name":"o3","package":"hello","patches":[],"lock":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		o, err := WriteBundle(dir, vocab.CID(b), b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !os.IsExist(err) {
				t.Fatalf("error %v is neither ErrInvalid nor I/O", err)
			}
			return
		}
		if o.CID() != vocab.CID(b) {
			t.Fatal("accepted bundle has another CID")
		}
	})
}
