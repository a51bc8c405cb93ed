// Package store keeps one node's verified claims in a single bbolt file:
// the claims themselves, indexes by recipe, package, builder and artifact,
// equivocation proofs, builder keys with their trust level,
// content-addressed blobs and the node's own builds (DESIGN §5,
// docs/STORE.md).
//
// Trust boundary: the store holds only claims that attest.Verify (or
// attest.Sign) produced. Ingest re-checks cheap invariants (claim ID = CID of
// the raw envelope, statement fields) but not signatures; claims read back
// are re-parsed from the bytes this package wrote, without a signature check.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors. Use errors.Is.
var (
	// ErrLocked: another process holds the database open for writing.
	ErrLocked = errors.New("store is locked by another process")
	// ErrSchemaTooNew: the file was written by a newer Lebowski.
	ErrSchemaTooNew = errors.New("store schema is newer than this program")
	// ErrNeedsMigration: a read-only open found an old schema.
	ErrNeedsMigration = errors.New("store schema needs a migration")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store is closed")
	// ErrReadOnly: a write on a store opened WithReadOnly.
	ErrReadOnly = errors.New("store is read-only")
	// ErrNotFound: no such claim, key or blob.
	ErrNotFound = errors.New("not found")
	// ErrBadClaim: a claim handed to Ingest failed a consistency check
	// (reported per claim in IngestResult.Err).
	ErrBadClaim = errors.New("bad claim")
	// ErrCorrupt: a stored record could not be decoded.
	ErrCorrupt = errors.New("corrupt store record")
	// ErrBlobMismatch: blob content does not hash to its CID.
	ErrBlobMismatch = errors.New("blob content does not match its cid")
)

// Bucket names (docs/STORE.md describes keys and values).
var (
	bktMeta          = []byte("meta")
	bktClaims        = []byte("claims")
	bktByRecipe      = []byte("by_recipe")
	bktByPackage     = []byte("by_package")
	bktByBuilder     = []byte("by_builder")
	bktByArtifact    = []byte("by_artifact")
	bktKeys          = []byte("keys")
	bktEquivocations = []byte("equivocations")
	bktBlobs         = []byte("blobs")
	bktOwn           = []byte("own")
	bktDigests       = []byte("digests")
	bktOrigins       = []byte("origins")
	bktKeyCounts     = []byte("key_counts")
)

// meta keys
var (
	metaSchema  = []byte("schema")
	metaClaims  = []byte("claims")
	metaRecipes = []byte("recipes")
	// what the keys in the budget's pool hold together (budget.go)
	metaPoolBytes = []byte("pool_bytes")
	metaPoolKeys  = []byte("pool_keys")
)

// migrations[i] upgrades a database from schema version i to i+1. All
// pending migrations run in one transaction at Open. Append only: never edit
// a released migration.
var migrations = []func(tx *bolt.Tx) error{
	// 0 → 1: initial layout.
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktMeta, bktClaims, bktByRecipe, bktByPackage, bktByBuilder,
			bktByArtifact, bktKeys, bktEquivocations, bktBlobs, bktOwn, bktDigests} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	},
	// 1 → 2: how each claim arrived (Origin); older claims have none.
	func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bktOrigins)
		return err
	},
	// 2 → 3: a head entry per (builder, recipe) in by_builder holding its
	// first success claim, so the equivocation check is O(1) per claim.
	migrateBuilderRecipe,
	// 3 → 4: key_counts, what each key's claims take (Budget).
	migrateKeyCounts,
	// 4 → 5: voter lists next to the recipe summaries (voters.go), binary
	// recipe summaries.
	migrateVoters,
	// 5 → 6: the pool of keys that do not vote (Budget): key_counts
	// flags, meta pool_bytes and pool_keys.
	migratePool,
}

// SchemaVersion is the schema this code writes.
func SchemaVersion() uint64 { return uint64(len(migrations)) }

// Store is an open claim store. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
	dir  string // blob directory for large blobs
	cfg  config
	log  *slog.Logger

	reqs     chan *ingestReq // unbuffered: see writer
	quit     chan struct{}
	done     chan struct{}
	closeMu  sync.Mutex
	closed   bool
	closeErr error

	keyMu    sync.RWMutex
	keyCache map[string]*openpgp.Entity
	// keysVersion changes whenever the keys bucket does (KeysVersion).
	keysVersion atomic.Uint64
	// ingested counts committed ingest results by Status (IngestCounts).
	ingested [5]atomic.Uint64
	// voters are keys that vote by certification (SetVoters).
	voters atomic.Pointer[map[string]bool]
	// votes caches whether stored key records vote (the writer's budget
	// check; budget.go).
	votes voteCache
}

// IngestCounts returns how many claims this process's Ingest calls
// committed, by status ("new", "duplicate", "equivocation", "rejected"):
// the metrics' and tests' view of work done, e.g. that a node ingests its
// own claim once.
func (s *Store) IngestCounts() map[string]uint64 {
	out := make(map[string]uint64, len(s.ingested))
	for st := range s.ingested {
		out[Status(st).String()] = s.ingested[st].Load()
	}
	return out
}

// KeysVersion is a counter that changes whenever a key record is written
// (imported, trust changed, learned from a claim, flagged as
// equivocating) by this process. Readers cache what they derive from the
// keys (the node's trust view) and rebuild it when the version moves.
func (s *Store) KeysVersion() uint64 { return s.keysVersion.Load() }

type config struct {
	log           *slog.Logger
	timeout       time.Duration
	maxBatch      int
	maxDelay      time.Duration
	noSync        bool
	readOnly      bool
	inlineBlobMax int
	now           func() time.Time
	budget        Budget
	exempt        map[string]bool // upper-case fingerprints (WithExempt)
}

// Option configures Open.
type Option func(*config)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithTimeout bounds how long Open waits for the file lock (default 1s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithMaxBatch bounds the claims committed in one transaction (default 1000).
func WithMaxBatch(n int) Option { return func(c *config) { c.maxBatch = n } }

// WithMaxDelay makes the writer linger up to d after the first request of a
// batch to collect more (default 0: commit as soon as the queue is empty;
// requests arriving during an fsync form the next batch anyway).
func WithMaxDelay(d time.Duration) Option { return func(c *config) { c.maxDelay = d } }

// WithNoSync disables fsync. Tests and benchmarks only: acknowledged claims
// are then not durable across a machine crash.
func WithNoSync() Option { return func(c *config) { c.noSync = true } }

// WithReadOnly opens the file shared and read-only (the CLI while no
// daemon runs). Writes fail with ErrReadOnly.
func WithReadOnly() Option { return func(c *config) { c.readOnly = true } }

// WithInlineBlobMax sets the size above which blobs go to files (default 1 MiB).
func WithInlineBlobMax(n int) Option { return func(c *config) { c.inlineBlobMax = n } }

// withClock is for tests.
func withClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Open opens or creates the store at path (a file; large blobs live in
// <dir of path>/blobs/). It runs pending migrations and starts the writer.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := config{
		log:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		timeout:       time.Second,
		maxBatch:      1000,
		inlineBlobMax: 1 << 20,
		budget:        DefaultBudget,
		now:           time.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxBatch < 1 {
		cfg.maxBatch = 1
	}
	if cfg.timeout <= 0 {
		cfg.timeout = time.Second // bbolt waits forever on 0: never do that
	}
	if !cfg.readOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	var db *bolt.DB
	var err error
	for try := 0; ; try++ {
		before := fileID(path)
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:        cfg.timeout,
			NoSync:         cfg.noSync,
			ReadOnly:       cfg.readOnly,
			FreelistType:   bolt.FreelistMapType,
			NoFreelistSync: false,
		})
		if err != nil || !replaced(before, path) {
			break
		}
		db.Close() // Compact replaced the file while we waited for its lock
		if try == 2 {
			return nil, fmt.Errorf("open store %s: the file was replaced 3 times while this process waited for its lock: is something rewriting it in a loop?", path)
		}
	}
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			who := "another process"
			if pid := lockHolder(path); pid > 0 {
				who = fmt.Sprintf("process %d", pid)
			}
			return nil, fmt.Errorf("open store %s: %w: %s holds it (is lebowskid running? stop it or use the daemon's API) — gave up after %s",
				path, ErrLocked, who, cfg.timeout)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		db: db, path: path, dir: filepath.Join(filepath.Dir(path), "blobs"), cfg: cfg, log: cfg.log,
		reqs: make(chan *ingestReq), quit: make(chan struct{}), done: make(chan struct{}),
		keyCache: make(map[string]*openpgp.Entity),
	}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if cfg.readOnly {
		close(s.done)
	} else {
		s.removeBlobTemps()
		go s.writer()
	}
	return s, nil
}

func (s *Store) migrate() error {
	var have uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bktMeta); m != nil {
			have = getUint(m, metaSchema)
		}
		return nil
	}); err != nil {
		return err
	}
	want := SchemaVersion()
	switch {
	case have > want:
		return fmt.Errorf("%w: file has schema %d, this build knows up to %d; upgrade lebowski", ErrSchemaTooNew, have, want)
	case have == want:
		return nil
	case s.cfg.readOnly:
		return fmt.Errorf("%w: file has schema %d, want %d; open it once read-write (start lebowskid)", ErrNeedsMigration, have, want)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for v := have; v < want; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("migrate schema %d→%d: %w", v, v+1, err)
			}
		}
		m, err := tx.CreateBucketIfNotExists(bktMeta)
		if err != nil {
			return err
		}
		s.log.Info("store migrated", "path", s.path, "from", have, "to", want)
		return putUint(m, metaSchema, want)
	})
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close waits for queued writes to commit, then closes the file. Further
// calls return the first result.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return s.closeErr
	}
	s.closed = true
	close(s.quit)
	<-s.done
	s.closeErr = s.db.Close()
	return s.closeErr
}

// DB exposes the bbolt handle for read-only inspection in tools and tests.
// Do not write through it.
func (s *Store) DB() *bolt.DB { return s.db }

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bolt.Bucket, k []byte, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.Put(k, buf[:])
}

func addUint(b *bolt.Bucket, k []byte, d uint64) error { return putUint(b, k, getUint(b, k)+d) }

// removeBlobTemps deletes blob temp files a crash left behind. Safe: this
// process holds the write lock, so no other writer is using them.
func (s *Store) removeBlobTemps() {
	tmps, _ := filepath.Glob(filepath.Join(s.dir, ".tmp-*"))
	for _, t := range tmps {
		if err := os.Remove(t); err != nil {
			s.log.Warn("remove stale blob temp file", "path", t, "err", err)
		}
	}
	if len(tmps) > 0 {
		s.log.Info("removed stale blob temp files", "count", len(tmps))
	}
}
