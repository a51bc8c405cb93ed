// Package version reports the build's version: the module version and the
// VCS revision Go embeds in binaries built from a git checkout.
package version

import (
	"runtime/debug"
	"strings"
)

// String is "<module version> (<revision>[, modified])", e.g.
// "(devel) (5e922b5c1a2b, modified)".
func String() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	parts := []string{rev}
	if dirty {
		parts = append(parts, "modified")
	}
	return v + " (" + strings.Join(parts, ", ") + ")"
}
