package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lebowski-dist/lebowski/cmd/internal/human"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

func readAllLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("input larger than %d bytes", max)
	}
	return b, nil
}

// notFoundIsUsage maps "not found" to exit 2 with a hint.
func notFoundIsUsage(err error, hint string) error {
	if core.IsNotFound(err) {
		return usageErr("%v (%s)", err, hint)
	}
	if core.IsInvalid(err) {
		return usageErr("%v", err)
	}
	return err
}

func ago(now, t time.Time) string { return human.Ago(now, t, "never") }

func short(s string, n int) string { return human.Short(s, n) }

// writeFileAtomic writes data to path through a temporary file in the
// same directory, so a reader never sees half a file.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ask runs one read call on the node's API (the daemon, or the store
// opened read-only for this call).
func ask[T any](ctx context.Context, g *globals, call func(core.API) (T, error)) (T, error) {
	var zero T
	api, done, err := g.api(ctx, read)
	if err != nil {
		return zero, err
	}
	defer done()
	return call(api)
}
