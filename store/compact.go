package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CompactResult is what Compact did.
type CompactResult struct {
	Path        string        `json:"path"`
	BytesBefore int64         `json:"bytes_before"`
	BytesAfter  int64         `json:"bytes_after"`
	Claims      uint64        `json:"claims"`
	Took        time.Duration `json:"took_ns"`
}

// compactSuffix names the copy Compact writes next to the store; a
// leftover one (a crash during a compaction) is removed by the next.
const compactSuffix = ".compact.tmp"

// Compact rewrites the store file at path with its B+tree pages full and
// no free pages, then replaces the file. Claims arrive in random key order,
// so an ingested store's pages are about two thirds full and the file only
// grows (bbolt reuses freed pages but never shrinks): on the 1M-claim
// benchmark store, 1,946 → 1,235 bytes per claim (BENCHMARKS.md).
//
// It needs the store to itself: it takes the write lock (ErrLocked when a
// daemon holds it) and keeps it until the new file is in place. It needs
// free space in the store's directory for the copy; the original is only
// replaced after the copy is complete and synced, so a crash or a full disk
// leaves it as it was. Pending migrations run first.
func Compact(path string, opts ...Option) (*CompactResult, error) {
	start := time.Now()
	tmp := path + compactSuffix
	s, err := Open(path, opts...)
	if err != nil {
		return nil, err
	}
	if s.cfg.readOnly {
		s.Close()
		return nil, fmt.Errorf("compact %s: %w", path, errors.New("the store was opened read-only"))
	}
	defer s.Close()
	_ = os.Remove(tmp) // a crashed compaction's copy; we hold the write lock now
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	res := &CompactResult{Path: path, BytesBefore: fi.Size()}
	st, err := s.Stats()
	if err != nil {
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	res.Claims = st.Claims
	if err := checkFreeSpace(filepath.Dir(path), s.db); err != nil {
		return nil, fmt.Errorf("compact %s: %w", path, err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("compact %s: create %s: %w", path, tmp, err)
	}
	// fail leaves the store as it was: the copy is closed (bbolt's Close
	// is a no-op the second time) and removed.
	fail := func(err error) (*CompactResult, error) {
		dst.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("compact %s: %w (the store is unchanged)", path, err)
	}
	// bolt.Compact copies every bucket in key order with FillPercent 1.0,
	// committing every 64 MiB.
	if err := bolt.Compact(dst, s.db, 64<<20); err != nil {
		return fail(err)
	}
	if err := dst.Sync(); err != nil {
		return fail(err)
	}
	if err := dst.Close(); err != nil {
		return fail(err)
	}
	// The copy gets the store's mode and owner: compacting a daemon's
	// store as root must not leave a file the daemon cannot open.
	if err := sameOwnerAndMode(tmp, fi); err != nil {
		return fail(err)
	}
	// Still holding the lock on the old file: a process that opens the
	// path from now on gets the new one, and one that was waiting on the
	// old file's lock notices it was replaced (Open checks the inode).
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("replace the store: %w", err))
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if fi, err := os.Stat(path); err == nil {
		res.BytesAfter = fi.Size()
	}
	res.Took = time.Since(start)
	return res, nil
}

// checkFreeSpace refuses to start a copy that cannot fit: the pages in use
// (an upper bound of the compacted size) must fit in the free space.
func checkFreeSpace(dir string, db *bolt.DB) error {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return nil // cannot tell: try, a failed copy leaves the store unchanged
	}
	avail := int64(fs.Bavail) * int64(fs.Bsize)
	var need int64
	err := db.View(func(tx *bolt.Tx) error {
		st := db.Stats()
		need = tx.Size() - int64(st.FreePageN+st.PendingPageN)*int64(db.Info().PageSize)
		return nil
	})
	if err != nil {
		return err
	}
	if need > avail {
		return fmt.Errorf("needs up to %d MB free in %s for the copy, %d MB are: free some space and try again", need>>20, dir, avail>>20)
	}
	return nil
}

func sameOwnerAndMode(path string, like os.FileInfo) error {
	if err := os.Chmod(path, like.Mode().Perm()); err != nil {
		return err
	}
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) == os.Getuid() && int(st.Gid) == os.Getgid() {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("give the copy the store's owner %d:%d: %w (run as that user or root)", st.Uid, st.Gid, err)
	}
	return nil
}

// fileID identifies the file at path (nil when it does not exist).
func fileID(path string) os.FileInfo {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return fi
}

// replaced reports whether the file at path changed since before was
// taken: Compact replaced it while Open waited for the old file's lock.
// A false alarm only costs Open one more try.
func replaced(before os.FileInfo, path string) bool {
	now := fileID(path)
	return before != nil && now != nil && !os.SameFile(before, now)
}
