package attest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Fast canonical encoders. canonicalJSON (marshal, decode generically,
// re-encode with sorted keys) defines the canonical form; the mirror
// structs below declare the same JSON fields in sorted key order, so one
// json.Marshal pass yields the identical bytes at a fraction of the cost
// (Verify re-encodes every payload and envelope). mirrorsMatch checks at
// start-up, by reflection, that the mirrors cover exactly the fields of
// Statement and Envelope; if a field is ever added to one and not the
// other, the generic path is used instead, so the canonical form cannot
// silently lose a field.

type canonOpinion struct {
	CID    string       `json:"cid"`
	Commit string       `json:"commit,omitempty"`
	Name   string       `json:"name"`
	Purity vocab.Purity `json:"purity"`
}

type canonArtifact struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

type canonStatement struct {
	Arch               string          `json:"arch"`
	Artifacts          []canonArtifact `json:"artifacts"`
	Builder            string          `json:"builder"`
	BuildinfoCID       string          `json:"buildinfo_cid,omitempty"`
	ContainerDigest    string          `json:"container_digest"`
	DebianSourceSHA256 string          `json:"debian_source_sha256"`
	DebianVersion      string          `json:"debian_version"`
	DiffoscopeCID      string          `json:"diffoscope_cid,omitempty"`
	Expected           []canonArtifact `json:"expected,omitempty"`
	LockCID            string          `json:"lock_cid,omitempty"`
	LogCID             string          `json:"log_cid,omitempty"`
	Opinion            canonOpinion    `json:"opinion"`
	Package            string          `json:"package"`
	PeerID             string          `json:"peer_id,omitempty"`
	Reason             string          `json:"reason,omitempty"`
	RecipeID           string          `json:"recipe_id"`
	Result             Result          `json:"result"`
	SecondArtifacts    []canonArtifact `json:"second_artifacts,omitempty"`
	Suite              string          `json:"suite"`
	Timestamp          time.Time       `json:"timestamp"`
	Type               string          `json:"type"`
	Version            string          `json:"version"`
}

type canonEnvelope struct {
	Key         []byte `json:"key,omitempty"`
	Payload     []byte `json:"payload"`
	PayloadType string `json:"payload_type"`
	Signature   string `json:"signature"`
}

var useMirrors = mirrorsMatch()

// mirrorsMatch reports whether each mirror has the same JSON fields
// (names and options, recursively) as its source type, in sorted order.
func mirrorsMatch() bool {
	pairs := [][2]reflect.Type{
		{reflect.TypeFor[Statement](), reflect.TypeFor[canonStatement]()},
		{reflect.TypeFor[OpinionRef](), reflect.TypeFor[canonOpinion]()},
		{reflect.TypeFor[Artifact](), reflect.TypeFor[canonArtifact]()},
		{reflect.TypeFor[Envelope](), reflect.TypeFor[canonEnvelope]()},
	}
	for _, p := range pairs {
		src, mir := jsonFields(p[0]), jsonFields(p[1])
		if !sort.StringsAreSorted(names(mir)) || len(src) != len(mir) {
			return false
		}
		want := map[string]string{}
		for _, f := range src {
			want[f[0]] = f[1]
		}
		for _, f := range mir {
			if want[f[0]] != f[1] {
				return false
			}
		}
	}
	return true
}

// jsonFields lists (json name, tag options + kind) of a struct's fields.
func jsonFields(t reflect.Type) [][2]string {
	var out [][2]string
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			return nil // not supported by the mirrors
		}
		kind := f.Type.Kind().String()
		if f.Type.Kind() == reflect.Slice {
			kind += "/" + f.Type.Elem().Kind().String()
		}
		out = append(out, [2]string{name, opts + "|" + kind})
	}
	return out
}

func names(fs [][2]string) []string {
	var n []string
	for _, f := range fs {
		n = append(n, f[0])
	}
	return n
}

// marshalNoEscape is json.Marshal without HTML escaping and without the
// trailing newline of Encoder.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

func canonicalStatement(s *Statement) ([]byte, error) {
	if !useMirrors || !validUTF8(s) {
		// encoding/json escapes invalid UTF-8 as \ufffd on the first
		// pass but emits a raw U+FFFD after the generic round trip: keep
		// the generic definition for such (never verifiable) input.
		return canonicalJSON(s)
	}
	return mirrorStatement(s)
}

func mirrorStatement(s *Statement) ([]byte, error) {
	c := canonStatement{
		Arch: s.Arch, Builder: s.Builder, BuildinfoCID: s.BuildinfoCID, ContainerDigest: s.ContainerDigest,
		DebianSourceSHA256: s.DebianSourceSHA256, DebianVersion: s.DebianVersion, LockCID: s.LockCID, LogCID: s.LogCID,
		Opinion: canonOpinion{CID: s.Opinion.CID, Commit: s.Opinion.Commit, Name: s.Opinion.Name, Purity: s.Opinion.Purity},
		Package: s.Package, PeerID: s.PeerID, RecipeID: s.RecipeID, Result: s.Result, Suite: s.Suite, Timestamp: s.Timestamp,
		Type: s.Type, Version: s.Version, Reason: s.Reason, DiffoscopeCID: s.DiffoscopeCID,
		Artifacts: canonArtifacts(s.Artifacts), SecondArtifacts: canonArtifacts(s.SecondArtifacts), Expected: canonArtifacts(s.Expected),
	}
	return marshalNoEscape(c)
}

// canonArtifacts keeps nil nil (omitted or null as in the generic path).
func canonArtifacts(as []Artifact) []canonArtifact {
	if as == nil {
		return nil
	}
	out := make([]canonArtifact, len(as))
	for i, a := range as {
		out[i] = canonArtifact(a)
	}
	return out
}

func canonicalEnvelope(e *Envelope) ([]byte, error) {
	if !useMirrors || !utf8.ValidString(e.PayloadType) || !utf8.ValidString(e.Signature) {
		return canonicalJSON(e)
	}
	return mirrorEnvelope(e)
}

func mirrorEnvelope(e *Envelope) ([]byte, error) {
	return marshalNoEscape(canonEnvelope{Key: e.Key, Payload: e.Payload, PayloadType: e.PayloadType, Signature: e.Signature})
}

func validUTF8(s *Statement) bool {
	for _, v := range []string{s.Type, s.Package, s.Version, s.DebianVersion, s.Suite, s.Arch,
		s.Opinion.Name, s.Opinion.CID, s.Opinion.Commit, string(s.Opinion.Purity),
		s.DebianSourceSHA256, s.ContainerDigest, s.RecipeID, string(s.Result),
		s.BuildinfoCID, s.LogCID, s.LockCID, s.Builder, s.PeerID, s.Reason, s.DiffoscopeCID} {
		if !utf8.ValidString(v) {
			return false
		}
	}
	for _, set := range [][]Artifact{s.Artifacts, s.SecondArtifacts, s.Expected} {
		for _, a := range set {
			if !utf8.ValidString(a.Name) || !utf8.ValidString(a.SHA256) {
				return false
			}
		}
	}
	return true
}
