package builder

import (
	"context"
	"errors"
	"fmt"

	"github.com/lebowski-dist/lebowski/builder/source"
	"github.com/lebowski-dist/lebowski/opinions"
)

// Resolve pins a recipe's inputs from the verified mirror: the source
// package (InRelease → Sources → .dsc → files), and the build image's
// full closure — the packages a minbase image with the base packages and
// the source's Build-Depends holds, made once from the mirror to find out
// (Discover), each looked up in the suite's verified Packages index for
// its pool path, size and sha256. The result is what `lebowski opinion
// lock` writes beside an opinion and what vanilla builds record.
func (b *PodmanBuilder) Resolve(ctx context.Context, req Request) (*opinions.Lock, error) {
	req, err := b.normalize(req)
	if err != nil {
		return nil, err
	}
	src, err := b.src.Fetch(ctx, req.Suite, req.Package, req.Version)
	if err != nil {
		return nil, fmt.Errorf("lock %s: fetch source: %w", req.Package, err)
	}
	deps, err := ResolveBuildDepends([]string{src.BuildDepends}, req.Arch)
	if err != nil {
		return nil, fmt.Errorf("lock %s %s: %w", req.Package, src.Version, err)
	}
	m := NewManifest(req.Suite, req.Package, deps)
	if b.mirror != "" {
		m.Mirror = b.mirror
	}
	var resolved *source.Resolved
	for _, fresh := range []bool{false, true} {
		inst, err := b.images.Discover(ctx, m, fresh)
		if err != nil {
			return nil, fmt.Errorf("lock %s %s: %w", req.Package, src.Version, err)
		}
		for i := range inst {
			if inst[i].Arch == "" {
				inst[i].Arch = req.Arch
			}
		}
		resolved, err = b.src.ResolveBinaries(ctx, req.Suite, req.Arch, inst)
		var missing *source.MissingBinariesError
		if errors.As(err, &missing) && !fresh {
			b.log.Info("the mirror moved on since the image closure was cached; resolving again", "missing", len(missing.Missing))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock %s %s: %w", req.Package, src.Version, err)
		}
		break
	}
	l := &opinions.Lock{
		Package: req.Package, Suite: req.Suite, Arch: req.Arch, MirrorDate: resolved.MirrorDate, ImageEpoch: m.SourceDateEpoch,
		Source: opinions.LockSource{Version: src.Version, Directory: src.Directory,
			Dsc: opinions.LockFile{Name: src.DscName, Size: src.DscSize, SHA256: src.DscSHA256}},
	}
	if req.Opinion != nil {
		l.Opinion = req.Opinion.Name
	}
	for _, f := range src.Files {
		l.Source.Files = append(l.Source.Files, opinions.LockFile{Name: f.Name, Size: f.Size, SHA256: f.SHA256})
	}
	for _, p := range resolved.Packages {
		l.Image = append(l.Image, opinions.LockDeb{Name: p.Name, Version: p.Version, Arch: p.Arch, Filename: p.Filename, Size: p.Size, SHA256: p.SHA256})
	}
	l.Normalize()
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("lock %s %s: %w", req.Package, src.Version, err)
	}
	b.log.Info("resolved lock", "package", req.Package, "version", src.Version, "packages", len(l.Image), "mirror_date", l.MirrorDate)
	return l, nil
}
