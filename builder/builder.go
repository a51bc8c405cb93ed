// Package builder rebuilds Debian source packages reproducibly under an
// opinion, in a pinned podman container without network (DESIGN §3).
package builder

import (
	"context"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/opinions"
)

// Request asks for one rebuild.
type Request struct {
	Package string // Debian source package
	Version string // Debian source version; empty = the opinion's, or the suite's current
	Suite   string // empty = the opinion's, or "bookworm"
	Arch    string // empty = host arch (amd64)
	// Opinion to apply; nil builds vanilla Debian.
	Opinion *opinions.Opinion
	// Lock pins the inputs; nil uses the opinion's lock, or resolves one
	// from the verified mirror.
	Lock *opinions.Lock
	// Progress, optional, receives this build's log lines as the build
	// writes them (the daemon keeps a tail for the status page). It is
	// called from one goroutine at a time and must not block.
	Progress func(line string)
}

// Output is one produced file.
type Output struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Path   string `json:"path"` // where the file is kept on this node
	Size   int64  `json:"size"`
}

// Result of a rebuild. A build that ran but failed is a Result with
// Status attest.ResultFailed (and a log), not an error; errors are for
// refusals (bad opinion, tampered source) and environment trouble.
type Result struct {
	Recipe        attest.Recipe
	BinaryVersion string
	Status        attest.Result
	FailReason    string
	Artifacts     []Output // .debs (and .udebs) only
	Buildinfo     []byte   // deb822 .buildinfo, with X-Lebowski-Opinion / X-Lebowski-Image
	Log           []byte   // full build log
	Installed     []string // Installed-Build-Depends of the image ("pkg (= ver)")
	// Lock is the lock the build ran from (resolved now for a vanilla
	// build or an unlocked opinion).
	Lock *opinions.Lock
	// Second and Diffoscope describe an unreproducible BuildTwice: the
	// second build's outputs and the diffoscope report.
	Second     []Output
	Diffoscope []byte
}

// Builder is the seam the daemon and CLI use; tests swap a fake in.
type Builder interface {
	Build(ctx context.Context, req Request) (*Result, error)
}

// OpinionRef names an opinion in a claim (zero for a vanilla build).
func OpinionRef(o *opinions.Opinion) attest.OpinionRef {
	if o == nil {
		return attest.OpinionRef{}
	}
	return attest.OpinionRef{Name: o.Name, CID: o.CID(), Commit: o.Commit, Purity: o.Purity}
}
