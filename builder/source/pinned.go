package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Peers fetches content by CID from other Lebowski nodes over
// /lebowski/blob/1. Every node keeps the files it built with under the CID
// of their sha256, so a file the archive and the snapshot no longer have
// is still reachable while one peer holds it.
type Peers interface {
	// FetchBlob returns the content named by cid from some peer, and which
	// peer answered. The fetcher checks the bytes again before use.
	FetchBlob(ctx context.Context, cid string, maxSize int64) (data []byte, from string, err error)
}

// WithSnapshot sets the base URL of a Debian snapshot archive (the
// directory holding archive/debian/<timestamp>/), e.g.
// http://snapshot.debian.org: the second place pinned files are fetched
// from, after the mirror.
func WithSnapshot(url string) Option {
	return func(f *Fetcher) error {
		if url == "" {
			return nil
		}
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			return fmt.Errorf("snapshot %q: want an http:// or https:// URL", url)
		}
		f.snapshot = strings.TrimRight(url, "/")
		return nil
	}
}

// WithPeers sets where pinned files are fetched from when neither the
// mirror nor the snapshot archive has them.
func WithPeers(p Peers) Option { return func(f *Fetcher) error { f.peers = p; return nil } }

// Where a pinned file came from.
const (
	OriginCache    = "cache"
	OriginMirror   = "mirror"
	OriginSnapshot = "snapshot"
	OriginPeer     = "peer"
)

// Pinned is a file wanted by size and sha256, as a lock names it.
type Pinned struct {
	Name   string // file name, for messages
	Path   string // path in the Debian archive (pool/…); "" when only peers can have it
	Size   int64
	SHA256 string
}

// ErrUnavailable: no place had a pinned file with the right bytes.
var ErrUnavailable = errors.New("source: pinned file unavailable")

// UnavailableError names the file and every place tried, with why.
type UnavailableError struct {
	File  Pinned
	Tried []string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("source: %s (sha256 %s, %d bytes) is not available: %s", e.File.Name, e.File.SHA256, e.File.Size, strings.Join(e.Tried, "; "))
}

func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// FetchPinned makes sure the file is in the cache and returns its path and
// where it came from: the cache, the mirror's pool, the snapshot archive
// at snapshot (a timestamp such as 20260712T101637Z, from the lock), or a
// peer ("peer <id>"), tried in that order. Whatever the place, the bytes
// are checked against size and sha256 before they enter the cache; a place
// serving other bytes is skipped and named in the error if nothing works.
// limit bounds the size (a lock is not trusted to name a 100 GB file).
func (f *Fetcher) FetchPinned(ctx context.Context, p Pinned, snapshot string, limit int64) (path, origin string, err error) {
	if !vocab.IsSHA256Hex(p.SHA256) || p.Size <= 0 || vocab.CheckFileName(p.Name) != nil {
		return "", "", fmt.Errorf("source: pinned file %q: bad name, size or sha256", p.Name)
	}
	if p.Size > limit {
		return "", "", fmt.Errorf("source: pinned %s: %w: %d bytes, limit %d", p.Name, ErrTooLarge, p.Size, limit)
	}
	want := checksum{Name: p.Name, SHA256: p.SHA256, Size: p.Size}
	unlock := f.lock("blob/" + p.SHA256)
	defer unlock()
	if path, ok := f.cached(p.Name, want); ok {
		return path, OriginCache, nil
	}
	if f.offline {
		return "", "", fmt.Errorf("source: pinned %s: %w", p.Name, ErrNotCached)
	}
	var tried []string
	try := func(origin, url string) (string, bool) {
		path, err := f.download(ctx, p.Name, url, want)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s %s: %v", origin, url, unwrapFetch(err)))
			f.log.Debug("pinned file not at", "origin", origin, "url", url, "err", err)
			return "", false
		}
		f.log.Info("fetched pinned file", "file", p.Name, "from", origin, "url", url, "bytes", p.Size)
		return path, true
	}
	if p.Path != "" {
		if path, ok := try(OriginMirror, f.mirror+"/"+p.Path); ok {
			return path, OriginMirror, nil
		}
		if f.snapshot != "" && snapshot != "" {
			if path, ok := try(OriginSnapshot, f.snapshot+"/archive/debian/"+snapshot+"/"+p.Path); ok {
				return path, OriginSnapshot, nil
			}
		} else {
			tried = append(tried, "snapshot: not configured (snapshot_url)")
		}
	}
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	if f.peers != nil {
		cid, _ := vocab.CIDOfSHA256Hex(p.SHA256)
		data, from, err := f.peers.FetchBlob(ctx, cid, p.Size)
		if err == nil {
			path, err := f.storeStream(p.Name, bytes.NewReader(data), want)
			if err == nil {
				f.log.Info("fetched pinned file", "file", p.Name, "from", "peer", "peer", from, "bytes", p.Size)
				return path, OriginPeer + " " + from, nil
			}
			tried = append(tried, fmt.Sprintf("peer %s: %v", from, err))
		} else {
			tried = append(tried, fmt.Sprintf("peers: %v", err))
		}
	} else {
		tried = append(tried, "peers: none reachable from here (start lebowskid to fetch from peers)")
	}
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	return "", "", &UnavailableError{File: p, Tried: tried}
}

// unwrapFetch drops the "fetch <name>: " prefix download adds.
func unwrapFetch(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": GET "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// PinnedSource is a Debian source package as a lock pins it.
type PinnedSource struct {
	Suite, Package, Version, Directory string
	Dsc                                File // name, size, sha256
	Files                              []File
}

// FetchPinnedSource fetches a locked source package by hash (mirror pool,
// snapshot, peers), checks that the .dsc names exactly the locked files,
// and returns it ready for dpkg-source. No InRelease is needed: the lock
// was resolved from the verified archive and the opinion's CID covers it.
func (f *Fetcher) FetchPinnedSource(ctx context.Context, ps PinnedSource, snapshot string) (*Source, error) {
	if err := checkArgs(ps.Suite, ps.Package, ps.Version); err != nil {
		return nil, fmt.Errorf("source: pinned: %w", err)
	}
	pin := func(fl File, limit int64) (string, error) {
		p, origin, err := f.FetchPinned(ctx, Pinned{Name: fl.Name, Path: ps.Directory + "/" + fl.Name, Size: fl.Size, SHA256: fl.SHA256}, snapshot, limit)
		if err != nil {
			return "", err
		}
		f.log.Debug("pinned source file", "file", fl.Name, "origin", origin)
		return p, nil
	}
	dscPath, err := pin(ps.Dsc, maxDscSize)
	if err != nil {
		return nil, fmt.Errorf("source: pinned %s %s: %w", ps.Package, ps.Version, err)
	}
	d, err := readDsc(dscPath)
	if err != nil {
		return nil, fmt.Errorf("source: pinned %s %s: %w", ps.Package, ps.Version, err)
	}
	entry := &sourcesEntry{Package: ps.Package, Version: ps.Version, Directory: ps.Directory,
		Files: append([]checksum{{Name: ps.Dsc.Name, SHA256: ps.Dsc.SHA256, Size: ps.Dsc.Size}}, toChecksums(ps.Files)...)}
	if err := crossCheck(d, entry); err != nil {
		return nil, fmt.Errorf("source: pinned %s %s: the .dsc and the lock disagree: %w", ps.Package, ps.Version, err)
	}
	var files []File
	for _, fl := range ps.Files {
		p, err := pin(fl, maxSourceFile)
		if err != nil {
			return nil, fmt.Errorf("source: pinned %s %s: %w", ps.Package, ps.Version, err)
		}
		files = append(files, File{Name: fl.Name, Path: p, SHA256: fl.SHA256, Size: fl.Size})
	}
	ie := &indexEntry{Mirror: f.mirror, Suite: ps.Suite, Package: ps.Package, Version: ps.Version, Directory: ps.Directory,
		Dsc: ps.Dsc, Signer: "lock", FetchedAt: f.now().UTC()}
	for _, fl := range files {
		ie.Files = append(ie.Files, File{Name: fl.Name, SHA256: fl.SHA256, Size: fl.Size})
	}
	return f.assemble(ie, d, dscPath, files)
}

func toChecksums(fs []File) []checksum {
	out := make([]checksum, len(fs))
	for i, fl := range fs {
		out[i] = checksum{Name: fl.Name, SHA256: fl.SHA256, Size: fl.Size}
	}
	return out
}

// CachedBySHA256 returns the path of a cached file with this sha256 (hex),
// after checking its bytes, so a node can serve what it built with to
// peers.
func (f *Fetcher) CachedBySHA256(sha256hex string) (string, bool) {
	return CachedFile(f.dir, sha256hex)
}

// CachedFile looks a file up by sha256 in the cache directory of a
// Fetcher (which may belong to another process: the daemon serves what
// the CLI fetched), re-hashing it before it answers.
func CachedFile(cacheDir, sha256hex string) (string, bool) {
	if !vocab.IsSHA256Hex(sha256hex) {
		return "", false
	}
	p := filepath.Join(cacheDir, "blobs", "sha256", sha256hex)
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	fh, err := os.Open(p)
	if err != nil {
		return "", false
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil || hex.EncodeToString(h.Sum(nil)) != sha256hex {
		return "", false
	}
	return p, true
}
