package opinions

import (
	"bytes"
	"encoding/base64"
	"encoding/json"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// CanonicalType names the canonical encoding; it is part of the encoded
// bytes so that a format change changes every CID. v2 added the patches'
// bytes and the lock: the canonical form is also the bundle in which an
// opinion travels between nodes.
const CanonicalType = "lebowski.opinion/v2"

// Canonical is the opinion's identity encoding and its bundle: JSON with
// sorted keys, no insignificant whitespace, no HTML escaping, nil lists as
// [], every field of the file, each patch with its path, sha256 and bytes
// (base64), and the lock (null when there is none). It does not depend on
// the YAML's formatting, comments or key order, nor on where the file was
// loaded from (Path, Dir and Commit are not in it). Everything a node
// needs to rebuild the recipe is in it: ParseBundle and WriteBundle turn
// it back into files. It is defined for validated opinions.
func (o *Opinion) Canonical() []byte {
	doc := o.fields()
	patches := make([]map[string]any, 0, len(o.Patches))
	for _, p := range o.Patches {
		patches = append(patches, map[string]any{"path": p.Path, "sha256": p.SHA256, "data": base64.StdEncoding.EncodeToString(o.patchData[p.Path])})
	}
	doc["type"] = CanonicalType
	doc["patches"] = patches
	var lock any // JSON null when unset
	if o.Lock != nil {
		lock = json.RawMessage(canonicalJSON(o.Lock))
	}
	doc["lock"] = lock
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// Only maps, strings, ints, slices and canonical raw JSON: cannot fail.
	if err := enc.Encode(doc); err != nil {
		panic("opinions: canonical encoding: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// fields are the opinion file's fields as a JSON object (what the YAML
// says, patches by path and sha256).
func (o *Opinion) fields() map[string]any {
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
	return map[string]any{
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
}

// CID is the opinion's content identifier: CIDv1, raw codec, sha2-256
// multihash of Canonical() (the bundle), in its default string form
// (base32, "bafkrei…"). A node holding the bundle under this CID serves it
// over /lebowski/blob/1 like any blob.
func (o *Opinion) CID() string { return vocab.CID(o.Canonical()) }

// PatchData returns a patch's bytes by path (nil if the opinion has no
// such patch).
func (o *Opinion) PatchData(path string) []byte { return o.patchData[path] }
