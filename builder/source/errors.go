package source

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrBadSignature: InRelease carries no signature that verifies with a
	// valid, non-revoked key of the configured keyring.
	ErrBadSignature = errors.New("source: bad or untrusted InRelease signature")
	// ErrHashMismatch: a downloaded or cached file does not have the sha256
	// (or size) that the authenticated index says it must have.
	ErrHashMismatch = errors.New("source: hash mismatch")
	// ErrNotFound: the suite, package or version is not in the archive.
	ErrNotFound = errors.New("source: not found")
	// ErrStale: the Release file has expired (Valid-Until passed) or is
	// dated in the future.
	ErrStale = errors.New("source: stale or future-dated Release")
	// ErrMalformed: an index, .dsc or signature could not be parsed, or
	// two authenticated documents disagree.
	ErrMalformed = errors.New("source: malformed archive data")
	// ErrTooLarge: a download exceeded its size limit.
	ErrTooLarge = errors.New("source: download too large")
	// ErrNotCached: offline mode and the answer is not in the cache.
	ErrNotCached = errors.New("source: not in cache (offline)")
)

// HashMismatchError says which file did not match. It unwraps to
// ErrHashMismatch.
type HashMismatchError struct {
	File     string // file name (or URL) that did not match
	Expected string // sha256 hex from the authenticated index
	Actual   string // sha256 hex of the bytes received
	// Sizes are set when the size was what differed (Actual may then be
	// the hash of a truncated or over-long prefix).
	ExpectedSize, ActualSize int64
}

func (e *HashMismatchError) Error() string {
	msg := fmt.Sprintf("source: %s: sha256 mismatch: expected %s, got %s", e.File, e.Expected, e.Actual)
	if e.ExpectedSize != e.ActualSize {
		msg += fmt.Sprintf(" (expected %d bytes, got %d)", e.ExpectedSize, e.ActualSize)
	}
	return msg + "; the file was refused (tampered mirror, proxy or cache?)"
}

func (e *HashMismatchError) Unwrap() error { return ErrHashMismatch }

// NotFoundError says what was not found and what is available. It unwraps
// to ErrNotFound.
type NotFoundError struct {
	Suite, Package, Version string
	Available               []string // versions of Package in Suite, if any
}

func (e *NotFoundError) Error() string {
	switch {
	case e.Package == "":
		return fmt.Sprintf("source: suite %q not found on the mirror", e.Suite)
	case len(e.Available) == 0:
		return fmt.Sprintf("source: package %q not found in %s (main/source)", e.Package, e.Suite)
	case e.Version != "":
		return fmt.Sprintf("source: %s %s not found in %s; available: %s", e.Package, e.Version, e.Suite, strings.Join(e.Available, ", "))
	default:
		return fmt.Sprintf("source: no current version of %s in %s; available: %s", e.Package, e.Suite, strings.Join(e.Available, ", "))
	}
}

func (e *NotFoundError) Unwrap() error { return ErrNotFound }
