// Package opinions loads, checks and identifies opinion files: public YAML
// files opinions/<source-package>/<name>.yaml that change how one Debian
// source package is built (DESIGN §2).
package opinions

import (
	"path/filepath"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Opinion is a decoded and validated opinion file.
type Opinion struct {
	Name     string       `yaml:"name" json:"name"`
	Package  string       `yaml:"package" json:"package"`
	Summary  string       `yaml:"summary" json:"summary"`
	Purity   vocab.Purity `yaml:"purity" json:"purity"`
	Debian   Debian       `yaml:"debian" json:"debian"`
	Revision int          `yaml:"revision" json:"revision"`
	Build    Build        `yaml:"build" json:"build"`
	Patches  []Patch      `yaml:"patches" json:"patches"`
	// SourceDateEpoch overrides the default (date of the last
	// debian/changelog entry) when set.
	SourceDateEpoch *int64 `yaml:"source_date_epoch" json:"source_date_epoch"`

	// Set by the loader, not part of the file.
	Path   string `yaml:"-" json:"-"` // file the opinion was read from
	Dir    string `yaml:"-" json:"-"` // directory patch paths are relative to
	Commit string `yaml:"-" json:"-"` // git commit of the file, if known
	// Lock pins the recipe's inputs: <name>.lock beside the file, nil
	// when there is none. Covered by the CID.
	Lock *Lock `yaml:"-" json:"-"`
	// patchData holds each patch's bytes by path (checked against its
	// sha256 by the loader); they travel in the bundle.
	patchData map[string][]byte
}

// LockPath is where the opinion's lock lives: <name>.lock beside the file.
func (o *Opinion) LockPath() string {
	return filepath.Join(filepath.Dir(o.Path), o.Name+".lock")
}

// Debian names the exact Debian source the opinion applies to.
type Debian struct {
	Suite   string `yaml:"suite" json:"suite"`
	Version string `yaml:"version" json:"version"`
}

// Flags are appended to one dpkg-buildflags variable.
type Flags struct {
	Append []string `yaml:"append" json:"append"`
}

// Build holds the build changes.
type Build struct {
	CFlags        Flags    `yaml:"cflags" json:"cflags"`
	CXXFlags      Flags    `yaml:"cxxflags" json:"cxxflags"`
	LDFlags       Flags    `yaml:"ldflags" json:"ldflags"`
	BuildOptions  []string `yaml:"build_options" json:"build_options"`   // DEB_BUILD_OPTIONS words, allow-listed
	ConfigureArgs []string `yaml:"configure_args" json:"configure_args"` // configure-only and above
}

// Patch is a quilt patch shipped beside the opinion file.
type Patch struct {
	Path   string `yaml:"path" json:"path"` // relative to the opinions/<package>/ directory
	SHA256 string `yaml:"sha256" json:"sha256"`
}

// BinaryVersion is the version of the packages built under the opinion:
// <debian version>~<name>+<revision> (vocab.BinaryVersion).
func (o *Opinion) BinaryVersion() vocab.BinaryVersion {
	return vocab.BinaryVersion{Debian: o.Debian.Version, Opinion: o.Name, Revision: o.Revision}
}

// Ref is "package/name".
func (o *Opinion) Ref() vocab.Ref { return vocab.Ref{Package: o.Package, Opinion: o.Name} }

// CID is the opinion's content identifier (CIDv1, raw codec, sha2-256 of
// Canonical()). Implemented in canonical.go.
