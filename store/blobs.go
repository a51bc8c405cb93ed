package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ipfs/go-cid"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	bolt "go.etcd.io/bbolt"
)

// Blob values in the `blobs` bucket start with a tag byte.
const (
	blobInline = 0 // [0][data]
	blobFile   = 1 // [1][8 size BE]: data in <dir>/blobs/<cid>
)

// BlobCID is the CIDv1 (raw codec, sha2-256) of data, as for claims.
func BlobCID(data []byte) string { return vocab.CID(data) }

// PutBlob stores data content-addressed and returns its CID. Blobs larger
// than the inline limit (1 MiB) are written atomically to a file
// (temp file, fsync, rename, fsync dir) before the bucket records the
// reference, so a crash leaves at most an unreferenced file.
func (s *Store) PutBlob(data []byte) (string, error) {
	if s.cfg.readOnly {
		return "", fmt.Errorf("put blob: %w", ErrReadOnly)
	}
	id := BlobCID(data)
	c, _ := cid.Decode(id)
	key := c.Bytes()
	if ok, _ := s.hasBlobKey(key); ok {
		return id, nil
	}
	var val []byte
	if len(data) > s.cfg.inlineBlobMax {
		if err := s.writeBlobFile(id, data); err != nil {
			return "", fmt.Errorf("put blob %s: %w", id, err)
		}
		val = binary.BigEndian.AppendUint64([]byte{blobFile}, uint64(len(data)))
	} else {
		val = append([]byte{blobInline}, data...)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bktBlobs).Put(key, val) }); err != nil {
		return "", fmt.Errorf("put blob %s: %w", id, err)
	}
	return id, nil
}

func (s *Store) blobPath(id string) string { return filepath.Join(s.dir, id) }

func (s *Store) writeBlobFile(id string, data []byte) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = tmp.Write(data)
	if err == nil && !s.cfg.noSync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.blobPath(id)); err != nil {
		return err
	}
	if s.cfg.noSync {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *Store) hasBlobKey(key []byte) (bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bktBlobs).Get(key) != nil
		return nil
	})
	return ok, err
}

// HasBlob reports whether the blob is stored.
func (s *Store) HasBlob(id string) (bool, error) {
	c, err := cid.Decode(id)
	if err != nil {
		return false, fmt.Errorf("has blob: cid %q: %w", id, err)
	}
	return s.hasBlobKey(c.Bytes())
}

// GetBlob returns a blob's content, checked against its CID (a file
// changed on disk is reported as ErrBlobMismatch, not returned).
func (s *Store) GetBlob(id string) ([]byte, error) {
	c, val, err := s.blobRecord(id)
	if err != nil {
		return nil, fmt.Errorf("get blob: %w", err)
	}
	data, err := decodeBlobValue(val, func() ([]byte, error) { return os.ReadFile(s.blobPath(id)) })
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", id, err)
	}
	if got := BlobCID(data); got != c.String() {
		return nil, fmt.Errorf("get blob %s: %w (content hashes to %s; the file %s was changed or damaged)", id, ErrBlobMismatch, got, s.blobPath(id))
	}
	return data, nil
}

func decodeBlobValue(v []byte, readFile func() ([]byte, error)) ([]byte, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("%w: empty blob record", ErrCorrupt)
	}
	switch v[0] {
	case blobInline:
		return v[1:], nil
	case blobFile:
		if len(v) != 9 {
			return nil, fmt.Errorf("%w: blob file record of %d bytes", ErrCorrupt, len(v))
		}
		data, err := readFile()
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: blob file missing: %v", ErrCorrupt, err)
		}
		if err != nil {
			return nil, err
		}
		if want := binary.BigEndian.Uint64(v[1:]); uint64(len(data)) != want {
			return nil, fmt.Errorf("%w: blob file has %d bytes, want %d", ErrBlobMismatch, len(data), want)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w: blob record tag %d", ErrCorrupt, v[0])
}

// OpenBlob opens a blob for streaming: its size is known before any byte
// is read, so a server can refuse a blob too large without loading it.
// The content is not checked here (GetBlob checks it): the file is named
// by the CID of the bytes PutBlob hashed and wrote, and a server that
// streams checks it against bit rot as it sees fit (the p2p blob server
// hashes each file version — size and modification time — once per hour
// per process, not per request).
func (s *Store) OpenBlob(id string) (io.ReadSeekCloser, int64, error) {
	_, val, err := s.blobRecord(id)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob: %w", err)
	}
	switch {
	case len(val) >= 1 && val[0] == blobInline:
		return nopSeekCloser{bytes.NewReader(val[1:])}, int64(len(val) - 1), nil
	case len(val) == 9 && val[0] == blobFile:
		want := int64(binary.BigEndian.Uint64(val[1:]))
		f, err := os.Open(s.blobPath(id))
		if err != nil {
			return nil, 0, fmt.Errorf("open blob %s: %w: blob file: %v", id, ErrCorrupt, err)
		}
		fi, err := f.Stat()
		if err == nil && fi.Size() != want {
			err = fmt.Errorf("%w: blob file has %d bytes, want %d", ErrBlobMismatch, fi.Size(), want)
		}
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("open blob %s: %w", id, err)
		}
		return f, want, nil
	}
	return nil, 0, fmt.Errorf("open blob %s: %w: blob record of %d bytes", id, ErrCorrupt, len(val))
}

type nopSeekCloser struct{ *bytes.Reader }

func (nopSeekCloser) Close() error { return nil }

// blobRecord returns the parsed CID and a copy of the blobs bucket's value
// for id, or an error wrapping ErrNotFound.
func (s *Store) blobRecord(id string) (cid.Cid, []byte, error) {
	c, err := cid.Decode(id)
	if err != nil {
		return cid.Undef, nil, fmt.Errorf("cid %q: %w", id, err)
	}
	var val []byte
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bktBlobs).Get(c.Bytes()); v != nil {
			val = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return cid.Undef, nil, fmt.Errorf("%s: %w", id, err)
	}
	if val == nil {
		return cid.Undef, nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return c, val, nil
}
