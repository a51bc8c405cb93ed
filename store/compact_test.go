package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
)

// snapshot is everything a reader sees of a store, to compare before and
// after a compaction.
type snapshot struct {
	stats   Stats
	ids     []string
	byPkg   []RecipeClaims
	voters  []RecipeVoters
	raw     map[string]string
	digests map[string]Digest
}

func takeSnapshot(t *testing.T, s *Store) snapshot {
	t.Helper()
	var sn snapshot
	var err error
	sn.stats, err = s.Stats()
	require.NoError(t, err)
	sn.stats.FileSize = 0
	sn.ids, err = s.ClaimIDs("hello")
	require.NoError(t, err)
	sn.byPkg, err = s.ByPackage("hello", "")
	require.NoError(t, err)
	sn.voters, err = s.Voters("hello", "")
	require.NoError(t, err)
	sn.digests, err = s.Digests()
	require.NoError(t, err)
	sn.raw = map[string]string{}
	for _, id := range sn.ids {
		raw, ok, err := s.GetRaw(id)
		require.NoError(t, err)
		require.True(t, ok)
		sn.raw[id] = string(raw)
	}
	return sn
}

func TestCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := mustOpenPath(t, path)
	keys := testKeys(t, 12)
	for i := 0; i < 250; i++ { // one transaction each: random-key inserts leave pages part full
		var batch []*attest.Claim
		for k := range keys {
			batch = append(batch, mustSign(t, keys[k], spec{recipe: i % 7, ts: i}))
		}
		mustIngest(t, s, batch...)
	}
	before := takeSnapshot(t, s)
	require.Len(t, before.ids, 3000)
	require.NoError(t, s.Close())
	require.NoError(t, os.Chmod(path, 0o640))

	res, err := Compact(path)
	require.NoError(t, err)
	assert.Equal(t, uint64(3000), res.Claims)
	assert.Less(t, res.BytesAfter, res.BytesBefore, "%+v", res)
	_, err = os.Stat(path + compactSuffix)
	assert.True(t, errors.Is(err, os.ErrNotExist), "no copy left behind")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "the store's mode is kept")

	s = mustOpenPath(t, path)
	assert.Equal(t, before, takeSnapshot(t, s), "a compacted store answers exactly as before")
	res2 := mustIngest(t, s, mustSign(t, testKeys(t, 13)[12], spec{ts: 99}), mustSign(t, keys[0], spec{ts: 100, variant: 1}))
	assert.Equal(t, []Status{StatusNew, StatusEquivocation}, statuses(res2), "ingest goes on, the heads survived")
}

func TestCompactNeedsTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := mustOpenPath(t, path)
	mustIngest(t, s, mustSign(t, testKeys(t, 1)[0], spec{}))
	_, err := Compact(path, WithTimeout(100*time.Millisecond))
	require.ErrorIs(t, err, ErrLocked, "a running daemon holds the store")
	require.NoError(t, s.Close())

	_, err = Compact(path, WithReadOnly())
	require.Error(t, err)
	_, err = Compact(filepath.Join(t.TempDir(), "nosuch", "store.db"), WithReadOnly())
	require.Error(t, err)
}

// A process that waited for the store's lock while Compact replaced the
// file opens the new file, not the unlinked old one (whose writes would be
// lost).
func TestOpenNoticesReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store.db")
	holder := mustOpenPath(t, path)
	mustIngest(t, holder, mustSign(t, testKeys(t, 1)[0], spec{ts: 1}))

	other := filepath.Join(dir, "other.db")
	o := mustOpenPath(t, other)
	fresh := mustSign(t, testKeys(t, 2)[1], spec{ts: 2})
	mustIngest(t, o, fresh)
	require.NoError(t, o.Close())

	opened := make(chan *Store, 1)
	go func() {
		s, err := Open(path, WithTimeout(10*time.Second))
		if err != nil {
			t.Error(err)
		}
		opened <- s
	}()
	time.Sleep(300 * time.Millisecond) // the goroutine now waits for the lock on the old file
	require.NoError(t, os.Rename(other, path))
	require.NoError(t, holder.Close())
	s := <-opened
	require.NotNil(t, s)
	defer s.Close()
	ok, err := s.Has(fresh.ID)
	require.NoError(t, err)
	assert.True(t, ok, "Open got the file now at the path")
}
