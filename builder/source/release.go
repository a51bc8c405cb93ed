package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// checkedRelease is a verified, parsed InRelease.
type checkedRelease struct {
	*release
	InReleaseSHA256 string // of the InRelease bytes
	Signer          string // fingerprint of the verifying (sub)key
}

// releaseState is the cached pointer to the last verified InRelease of a
// suite: index/<mirror>/<suite>/release.json.
type releaseState struct {
	Mirror    string    `json:"mirror"`
	Suite     string    `json:"suite"`
	InRelease string    `json:"inrelease_sha256"`
	FetchedAt time.Time `json:"fetched_at"`
}

// release returns the suite's verified Release, from the cache when it is
// young enough (or when offline), otherwise from the mirror.
func (f *Fetcher) release(ctx context.Context, suite string) (*checkedRelease, error) {
	unlock := f.lock("release/" + suite)
	defer unlock()
	now := f.now()

	statePath := filepath.Join(f.dir, "index", f.mirrorID, suite, "release.json")
	var cached *checkedRelease
	var st releaseState
	if b, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(b, &st); err == nil && isSHA256Hex(st.InRelease) {
			if data, err := os.ReadFile(f.blobPath(st.InRelease)); err == nil {
				cached, err = f.checkInRelease(data, suite, now)
				if err != nil {
					// Expired or no longer trusted (key revoked…): not usable.
					f.log.Info("cached InRelease not usable", "suite", suite, "err", err)
					if f.offline {
						return nil, fmt.Errorf("cached InRelease: %w", err)
					}
					cached = nil
				}
			}
		}
	}
	if cached != nil && (f.offline || now.Sub(st.FetchedAt) < f.releaseMaxAge) {
		f.log.Debug("reusing cached InRelease", "suite", suite, "fetched_at", st.FetchedAt)
		return cached, nil
	}
	if f.offline {
		return nil, fmt.Errorf("InRelease of %s: %w", suite, ErrNotCached)
	}

	url := f.mirror + "/dists/" + suite + "/InRelease"
	data, err := f.getSmall(ctx, url, maxInReleaseSize)
	if errors.Is(err, ErrNotFound) {
		return nil, &NotFoundError{Suite: suite}
	}
	if err != nil {
		return nil, err
	}
	fresh, err := f.checkInRelease(data, suite, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if cached != nil && fresh.Date.Before(cached.Date) {
		// A mirror behind the one we saw last time (or a replay): keep
		// the newer, still valid, one.
		f.log.Warn("mirror served an older InRelease than the cached one; keeping the cached one",
			"suite", suite, "served_date", fresh.Date, "cached_date", cached.Date)
		return cached, nil
	}
	if _, err := f.storeBlob(data); err != nil {
		return nil, err
	}
	st = releaseState{Mirror: f.mirror, Suite: suite, InRelease: fresh.InReleaseSHA256, FetchedAt: now.UTC()}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := writeFileAtomic(filepath.Join(f.dir, "tmp"), statePath, b, 0o644); err != nil {
		return nil, fmt.Errorf("save release state: %w", err)
	}
	f.log.Info("verified InRelease", "suite", suite, "signer", fresh.Signer, "date", fresh.Date, "sha256", fresh.InReleaseSHA256)
	return fresh, nil
}

// checkInRelease verifies the signature and the freshness of an InRelease
// and checks it is the suite asked for.
func (f *Fetcher) checkInRelease(data []byte, suite string, now time.Time) (*checkedRelease, error) {
	v, err := verifyInRelease(data, f.keyring, now)
	if err != nil {
		return nil, err
	}
	r, err := parseRelease(v.Plaintext)
	if err != nil {
		return nil, err
	}
	if err := checkReleaseFields(r, suite, now); err != nil {
		return nil, err
	}
	return &checkedRelease{release: r, InReleaseSHA256: sha256Hex(data), Signer: v.Signer}, nil
}

// checkReleaseFields refuses a Release for another suite (a validly signed
// InRelease of a different suite served in its place), one dated in the
// future and one whose Valid-Until has passed.
func checkReleaseFields(r *release, suite string, now time.Time) error {
	if suite != r.Codename && suite != r.Suite {
		return fmt.Errorf("%w: asked for suite %q but the Release is for Suite %q / Codename %q", ErrMalformed, suite, r.Suite, r.Codename)
	}
	if r.Date.After(now.Add(maxSkew)) {
		return fmt.Errorf("%w: Release Date %s is in the future (now %s); check the clock", ErrStale, r.Date.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !r.ValidUntil.IsZero() && now.After(r.ValidUntil) {
		return fmt.Errorf("%w: Release expired at %s (Valid-Until), now %s", ErrStale, r.ValidUntil.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}
