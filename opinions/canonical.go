package opinions

import (
	"bytes"
	"encoding/json"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// CanonicalType names the canonical encoding; it is part of the encoded
// bytes so that a future format change changes every CID.
const CanonicalType = "lebowski.opinion/v1"

// Canonical is the opinion's identity encoding: JSON with sorted keys, no
// insignificant whitespace, no HTML escaping, nil lists as [], and every
// field of the file (patches by path and sha256, which pins their content).
// It does not depend on the YAML's formatting, comments or key order, nor on
// where the file was loaded from (Path, Dir and Commit are not in it).
// It is defined for validated opinions (all strings valid UTF-8).
func (o *Opinion) Canonical() []byte {
	list := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	flags := func(f Flags) map[string]any { return map[string]any{"append": list(f.Append)} }
	patches := make([]map[string]any, 0, len(o.Patches))
	for _, p := range o.Patches {
		patches = append(patches, map[string]any{"path": p.Path, "sha256": p.SHA256})
	}
	var sde any // JSON null when unset
	if o.SourceDateEpoch != nil {
		sde = *o.SourceDateEpoch
	}
	doc := map[string]any{
		"type":    CanonicalType,
		"name":    o.Name,
		"package": o.Package,
		"summary": o.Summary,
		"purity":  string(o.Purity),
		"debian": map[string]any{
			"suite":   o.Debian.Suite,
			"version": o.Debian.Version,
		},
		"revision": o.Revision,
		"build": map[string]any{
			"cflags":         flags(o.Build.CFlags),
			"cxxflags":       flags(o.Build.CXXFlags),
			"ldflags":        flags(o.Build.LDFlags),
			"build_options":  list(o.Build.BuildOptions),
			"configure_args": list(o.Build.ConfigureArgs),
		},
		"patches":           patches,
		"source_date_epoch": sde,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// Only maps, strings, ints and slices of them: encoding cannot fail.
	if err := enc.Encode(doc); err != nil {
		panic("opinions: canonical encoding: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// CID is the opinion's content identifier: CIDv1, raw codec, sha2-256
// multihash of Canonical(), in its default string form (base32, "bafkrei…").
func (o *Opinion) CID() string { return vocab.CID(o.Canonical()) }
