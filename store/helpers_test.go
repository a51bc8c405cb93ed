package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	bolt "go.etcd.io/bbolt"
)

// mustOpenStore opens a fresh store in t.TempDir(), closed at cleanup.
func mustOpenStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	return mustOpenPath(t, filepath.Join(t.TempDir(), "store.db"), opts...)
}

func mustOpenPath(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// testKeys returns n builder identities shared by all tests (key
// generation is the slow part of a claim factory).
func testKeys(t testing.TB, n int) []*attest.Identity { return attesttest.Identities(t, n) }

func hex64(parts ...any) string {
	h := sha256.Sum256([]byte(fmt.Sprint(parts...)))
	return hex.EncodeToString(h[:])
}

// spec describes one test claim; the zero value is a valid success claim of
// package "hello" 2.10-3, recipe 0, artifact variant 0.
type spec struct {
	pkg     string
	debver  string
	recipe  int // varies the image digest: a different recipe
	variant int // varies the artifact hash (0 = the "honest" result)
	result  attest.Result
	ts      int // seconds after a fixed epoch
}

var epoch = time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)

func statement(sp spec) *attest.Statement {
	if sp.pkg == "" {
		sp.pkg = "hello"
	}
	if sp.debver == "" {
		sp.debver = "2.10-3"
	}
	if sp.result == "" {
		sp.result = attest.ResultSuccess
	}
	st := &attest.Statement{
		Type: attest.TypeRebuildV1, Package: sp.pkg, Version: sp.debver + "~o3+1", DebianVersion: sp.debver,
		Suite: "bookworm", Arch: "amd64",
		Opinion:            attest.OpinionRef{Name: "o3", CID: "bafkreio3", Purity: vocab.PurityPureCompilation},
		DebianSourceSHA256: hex64("dsc", sp.pkg, sp.debver),
		ContainerDigest:    "sha256:" + hex64("image", sp.recipe),
		Result:             sp.result,
		Timestamp:          epoch.Add(time.Duration(sp.ts) * time.Second),
	}
	deb := sp.pkg + "_" + sp.debver + "~o3+1_amd64.deb"
	switch sp.result {
	case attest.ResultSuccess:
		st.Artifacts = []attest.Artifact{{Name: deb, SHA256: hex64("deb", sp.pkg, sp.debver, sp.recipe, sp.variant)}}
	case attest.ResultMismatch: // a downloaded .deb that is not the rebuilt one
		st.Artifacts = []attest.Artifact{{Name: deb, SHA256: hex64("bad deb", sp.pkg, sp.debver, sp.recipe, sp.variant)}}
		st.Expected = []attest.Artifact{{Name: deb, SHA256: hex64("deb", sp.pkg, sp.debver, sp.recipe, 0)}}
	}
	st.RecipeID = st.Recipe().ID()
	return st
}

func mustSign(t testing.TB, id *attest.Identity, sp spec) *attest.Claim {
	t.Helper()
	c, err := attest.Sign(id, statement(sp))
	if err != nil {
		t.Fatalf("sign %+v: %v", sp, err)
	}
	return c
}

func mustIngest(t testing.TB, s *Store, claims ...*attest.Claim) []IngestResult {
	t.Helper()
	res, err := s.Ingest(context.Background(), claims...)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	if len(res) != len(claims) {
		t.Fatalf("ingest: %d results for %d claims", len(res), len(claims))
	}
	return res
}

func statuses(res []IngestResult) []Status {
	out := make([]Status, len(res))
	for i, r := range res {
		out[i] = r.Status
	}
	return out
}

// downgrade turns the closed store file at path into one of an older
// schema: undo removes what the newer migrations added, then the schema
// version is set.
func downgrade(t *testing.T, path string, schema uint64, undo func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := undo(tx); err != nil {
			return err
		}
		return putUint(tx.Bucket(bktMeta), metaSchema, schema)
	}); err != nil {
		t.Fatalf("downgrade to schema %d: %v", schema, err)
	}
}
