package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lebowski-dist/lebowski/attest"
)

// BuildTwice builds req two times and compares the artifact sets. The
// first build's files are copied aside first (a second build of the same
// recipe may reuse the output directory). When the sets differ, or the
// second build fails, the Result (the first's, with its files aside) is
// unreproducible: Second holds the second build's outputs and Diffoscope
// the report on the first differing pair (nil when diffoscope could not
// run). A first build that does not succeed is returned as it is.
func BuildTwice(ctx context.Context, b Builder, req Request) (*Result, error) {
	res, err := b.Build(ctx, req)
	if err != nil || res.Status != attest.ResultSuccess {
		return res, err
	}
	first, err := keepAside(res.Artifacts)
	if err != nil {
		return nil, fmt.Errorf("build twice: %w", err)
	}
	res.Artifacts = first
	res2, err := b.Build(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("build twice: second build: %w", err)
	}
	if res2.Status == attest.ResultSuccess && SameOutputs(res.Artifacts, res2.Artifacts) {
		return res, nil
	}
	res.Status = attest.ResultUnreproducible
	res.Second = res2.Artifacts
	if res2.Status != attest.ResultSuccess {
		res.FailReason = "the second build failed: " + res2.FailReason
		return res, nil
	}
	res.FailReason = "two builds of the same recipe gave different files"
	for _, x := range res.Artifacts {
		for _, y := range res2.Artifacts {
			if x.Name == y.Name && x.SHA256 != y.SHA256 {
				rep, _ := Diff(ctx, x.Path, y.Path) // a report with differences exits 1
				if len(rep) > 0 {
					res.Diffoscope = rep
				}
				return res, nil
			}
		}
	}
	return res, nil
}

// SameOutputs reports whether two builds produced the same files.
func SameOutputs(a, b []Output) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]string{}
	for _, x := range a {
		m[x.Name] = x.SHA256
	}
	for _, y := range b {
		if m[y.Name] != y.SHA256 {
			return false
		}
	}
	return true
}

func keepAside(outs []Output) ([]Output, error) {
	dir, err := os.MkdirTemp("", "lebowski-first-")
	if err != nil {
		return nil, err
	}
	kept := make([]Output, len(outs))
	for i, a := range outs {
		data, err := os.ReadFile(a.Path)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, a.Name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		kept[i] = a
		kept[i].Path = p
	}
	return kept, nil
}
