package builder

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"pault.ag/go/debian/dependency"
)

// ResolveBuildDepends turns raw Build-Depends(-Arch/-Indep) field values into
// the package names to install into a build image for arch (e.g. amd64),
// with no build profile active:
//
//   - of each "a | b" relation, the first alternative that applies to arch
//     and to the empty profile set is taken (sbuild's rule);
//   - version constraints are dropped: the suite's current version is
//     installed (the installed list is recorded instead);
//   - alternatives restricted to other architectures ([!amd64], [armel]) or
//     to build profiles (<nocheck>, <stage1>) are skipped;
//   - multi-arch qualifiers (:any, :native) are dropped.
//
// Virtual packages (debhelper-compat) are left to apt, which picks their
// single provider. A relation of which no alternative applies is skipped.
func ResolveBuildDepends(fields []string, arch string) ([]string, error) {
	a, err := dependency.ParseArch(arch)
	if err != nil {
		return nil, fmt.Errorf("resolve build-depends: arch %q: %w", arch, err)
	}
	var out []string
	for _, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		dep, err := dependency.Parse(f)
		if err != nil {
			return nil, fmt.Errorf("resolve build-depends: parse %q: %w", truncate(f, 120), err)
		}
		for _, rel := range dep.Relations {
			for _, p := range rel.Possibilities {
				if p.Substvar || !archApplies(p, a) || !profilesApply(p) {
					continue
				}
				name := p.Name
				if i := strings.IndexByte(name, ':'); i >= 0 {
					name = name[:i]
				}
				if !vocab.IsPackage(name) {
					return nil, fmt.Errorf("resolve build-depends: %q is not a Debian package name", truncate(name, 80))
				}
				out = append(out, name)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func archApplies(p dependency.Possibility, a *dependency.Arch) bool {
	if p.Architectures == nil || len(p.Architectures.Architectures) == 0 {
		return true
	}
	return p.Architectures.Matches(a)
}

// profilesApply: with no profile active, a restriction list <x y> holds
// only if every term is negated; the formula holds if any list holds.
func profilesApply(p dependency.Possibility) bool {
	if len(p.StageSets) == 0 {
		return true
	}
	for _, set := range p.StageSets {
		ok := true
		for _, s := range set.Stages {
			if !s.Not {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
