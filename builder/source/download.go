package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
)

// Size limits for downloads. Files whose size is known from an
// authenticated index are also held to exactly that size.
const (
	maxInReleaseSize = 1 << 20   // 1 MiB
	maxSourcesSize   = 200 << 20 // 200 MiB (compressed index as downloaded)
	maxSourcesUnpack = 1 << 30   // 1 GiB (decompressed Sources)
	maxSourceFile    = 2 << 30   // 2 GiB (one tarball, …)
	maxDscSize       = 16 << 20  // 16 MiB (a .dsc is a few KiB; it is read into memory)
)

// get starts a GET of url. A 404/410 is ErrNotFound; other non-200
// statuses are errors naming the URL and status.
func (f *Fetcher) get(ctx context.Context, url string) (*http.Response, error) {
	if f.offline {
		return nil, fmt.Errorf("GET %s: %w", url, ErrNotCached)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	req.Header.Set("User-Agent", userAgent)
	f.log.Debug("GET", "url", url)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
		return nil, fmt.Errorf("GET %s: %s: %w", url, resp.Status, ErrNotFound)
	}
	return nil, fmt.Errorf("GET %s: unexpected status %s", url, resp.Status)
}

// getSmall downloads url into memory, refusing more than limit bytes.
func (f *Fetcher) getSmall(ctx context.Context, url string, limit int64) ([]byte, error) {
	resp, err := f.get(ctx, url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: %w: more than %d bytes", url, ErrTooLarge, limit)
	}
	return b, nil
}

// fetchBlob makes sure the blob want.SHA256 is in the cache, downloading it
// from url if needed, and returns its path. name is used in errors and
// progress reports. The download streams to a temporary file while hashing
// and is renamed into place only when both size and sha256 match.
func (f *Fetcher) fetchBlob(ctx context.Context, name, url string, want checksum, limit int64) (string, error) {
	if want.Size > limit {
		return "", fmt.Errorf("fetch %s: %w: index says %d bytes, limit is %d", name, ErrTooLarge, want.Size, limit)
	}
	if p, ok := f.cached(name, want); ok {
		return p, nil
	}
	return f.download(ctx, name, url, want)
}

// cached returns the path of an intact cached blob; a corrupt one is
// dropped (and then fetched again by the caller).
func (f *Fetcher) cached(name string, want checksum) (string, bool) {
	p, err := f.cachedBlob(name, want)
	if err == nil {
		f.log.Debug("cache hit", "file", name, "sha256", want.SHA256)
		return p, true
	}
	if !errors.Is(err, os.ErrNotExist) {
		f.log.Warn("dropping corrupt cache entry", "file", name, "err", err)
		_ = os.Remove(f.blobPath(want.SHA256))
	}
	return "", false
}

// download fetches url into the cache as want, checking size and sha256
// while streaming.
func (f *Fetcher) download(ctx context.Context, name, url string, want checksum) (string, error) {
	resp, err := f.get(ctx, url)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	defer resp.Body.Close()
	return f.storeStream(name, resp.Body, want)
}

// storeStream writes r into the cache as want: to a temporary file while
// hashing, renamed into place only when both size and sha256 match.
func (f *Fetcher) storeStream(name string, r io.Reader, want checksum) (string, error) {
	tmp, err := os.CreateTemp(filepath.Join(f.dir, "tmp"), "dl-*")
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	pw := &progressWriter{name: name, total: want.Size, fn: f.progress}
	// Read one byte more than expected so an over-long body is detected.
	n, err := io.Copy(io.MultiWriter(tmp, h, pw), io.LimitReader(r, want.Size+1))
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	pw.flush()
	got := hex.EncodeToString(h.Sum(nil))
	if n != want.Size || got != want.SHA256 {
		return "", &HashMismatchError{File: name, Expected: want.SHA256, Actual: got, ExpectedSize: want.Size, ActualSize: n}
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	if err := tmp.Chmod(0o444); err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	dst := f.blobPath(want.SHA256)
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("fetch %s: %w", name, err)
	}
	tmp = nil
	f.log.Debug("stored", "file", name, "bytes", n, "sha256", want.SHA256)
	return dst, nil
}

// cachedBlob returns the path of a cached blob after re-hashing it. It
// returns an error wrapping os.ErrNotExist when the blob is absent, and a
// *HashMismatchError when it is present but corrupt.
func (f *Fetcher) cachedBlob(name string, want checksum) (string, error) {
	p := f.blobPath(want.SHA256)
	fh, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(fh, want.Size+1))
	if err != nil {
		return "", fmt.Errorf("read cached %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != want.Size || got != want.SHA256 {
		return "", &HashMismatchError{File: name + " (cached " + p + ")", Expected: want.SHA256, Actual: got, ExpectedSize: want.Size, ActualSize: n}
	}
	return p, nil
}

// storeBlob writes b (already checked by the caller, e.g. a verified
// InRelease) to the blob store and returns its sha256.
func (f *Fetcher) storeBlob(b []byte) (string, error) {
	sum := sha256.Sum256(b)
	hx := hex.EncodeToString(sum[:])
	dst := f.blobPath(hx)
	if _, err := f.cachedBlob("blob", checksum{SHA256: hx, Size: int64(len(b))}); err == nil {
		return hx, nil // already there and intact
	}
	_ = os.Remove(dst) // absent or corrupt: (re)write it
	if err := writeFileAtomic(filepath.Join(f.dir, "tmp"), dst, b, 0o444); err != nil {
		return "", fmt.Errorf("store blob: %w", err)
	}
	return hx, nil
}

func (f *Fetcher) blobPath(sha string) string {
	return filepath.Join(f.dir, "blobs", "sha256", sha)
}

// writeFileAtomic writes b to a temp file in tmpDir and renames it to dst.
func writeFileAtomic(tmpDir, dst string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(tmpDir, "w-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// progressWriter reports download progress every progressStep bytes.
type progressWriter struct {
	name        string
	total, done int64
	last        int64
	fn          func(name string, done, total int64)
}

const progressStep = 1 << 20

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.fn != nil && p.done-p.last >= progressStep {
		p.last = p.done
		p.fn(p.name, p.done, p.total)
	}
	return len(b), nil
}

func (p *progressWriter) flush() {
	if p.fn != nil && p.last != p.done {
		p.last = p.done
		p.fn(p.name, p.done, p.total)
	}
}
