// Package attest defines Lebowski's signed rebuild attestations ("claims"):
// the v1 statement, its canonical encoding, the signed envelope, builder
// identities (OpenPGP keys) and verification.
package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// TypeRebuildV1 is the only statement type this version understands.
const TypeRebuildV1 = "lebowski.rebuild/v1"

// Result of a rebuild.
type Result string

const (
	ResultSuccess        Result = "success"
	ResultFailed         Result = "failed"
	ResultUnreproducible Result = "unreproducible"
	// ResultMismatch is a red flag, not a build: the builder was given a
	// file of the recipe (Artifacts, one) whose hash differs from what it
	// expected (Expected: the consensus or its own rebuild). It never
	// counts as a vote (docs/TRUST.md).
	ResultMismatch Result = "mismatch"
)

// OpinionRef names the opinion a build applied. An empty Name and CID mean
// a vanilla (unmodified) Debian build.
type OpinionRef struct {
	Name   string       `json:"name"`
	CID    string       `json:"cid"`
	Commit string       `json:"commit,omitempty"`
	Purity vocab.Purity `json:"purity"`
}

// Artifact is one output file and its hash.
type Artifact struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// Recipe is everything that determines a build's bytes. Two builders with
// the same recipe ID must produce the same artifacts.
type Recipe struct {
	Source        string `json:"source"`         // Debian source package
	DebianVersion string `json:"debian_version"` // Debian source version the opinion applies to
	Suite         string `json:"suite"`
	Arch          string `json:"arch"`
	OpinionCID    string `json:"opinion_cid"`
	SourceSHA256  string `json:"debian_source_sha256"` // sha256 of the .dsc
	ImageDigest   string `json:"container_digest"`     // sha256:… of the build image rootfs
}

// ID is the hex sha256 of the recipe's canonical JSON encoding.
func (r Recipe) ID() string {
	b, err := json.Marshal(r) // struct field order is fixed: canonical
	if err != nil {
		panic(err) // only strings: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Statement is the signed content of a claim (DESIGN §4).
type Statement struct {
	Type               string     `json:"type"`
	Package            string     `json:"package"`        // source package
	Version            string     `json:"version"`        // binary version built (with the opinion suffix)
	DebianVersion      string     `json:"debian_version"` // Debian source version
	Suite              string     `json:"suite"`
	Arch               string     `json:"arch"`
	Opinion            OpinionRef `json:"opinion"`
	DebianSourceSHA256 string     `json:"debian_source_sha256"`
	ContainerDigest    string     `json:"container_digest"`
	RecipeID           string     `json:"recipe_id"`
	Result             Result     `json:"result"`
	Artifacts          []Artifact `json:"artifacts"`
	BuildinfoCID       string     `json:"buildinfo_cid,omitempty"`
	LogCID             string     `json:"log_cid,omitempty"`
	// LockCID names the lock the build ran from (a blob: the lock's
	// canonical JSON), so anyone can fetch it and rebuild the same inputs.
	LockCID string `json:"lock_cid,omitempty"`
	// Reason says why a build failed or was not reproducible, or what a
	// mismatch report saw (free text, one line).
	Reason string `json:"reason,omitempty"`
	// SecondArtifacts are the second build's hashes of an unreproducible
	// claim (Artifacts holds the first's); DiffoscopeCID names the
	// diffoscope report comparing them (a blob).
	SecondArtifacts []Artifact `json:"second_artifacts,omitempty"`
	DiffoscopeCID   string     `json:"diffoscope_cid,omitempty"`
	// Expected is, in a mismatch report, the hash the reported file
	// should have had.
	Expected  []Artifact `json:"expected,omitempty"`
	Builder   string     `json:"builder"` // OpenPGP fingerprint, upper-case hex
	PeerID    string     `json:"peer_id,omitempty"`
	Timestamp time.Time  `json:"timestamp"`
}

// Recipe returns the recipe the statement is about.
func (s *Statement) Recipe() Recipe {
	return Recipe{
		Source: s.Package, DebianVersion: s.DebianVersion, Suite: s.Suite, Arch: s.Arch,
		OpinionCID: s.Opinion.CID, SourceSHA256: s.DebianSourceSHA256, ImageDigest: s.ContainerDigest,
	}
}

// ArtifactKey is a stable summary of the artifact set: sorted "name=sha256"
// lines hashed. Two claims agree when their keys are equal.
func (s *Statement) ArtifactKey() string {
	lines := make([]string, 0, len(s.Artifacts))
	for _, a := range s.Artifacts {
		lines = append(lines, a.Name+"="+a.SHA256)
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Canonical returns the canonical encoding: keys sorted, no insignificant
// whitespace, timestamps in UTC with second precision.
func (s *Statement) Canonical() ([]byte, error) {
	c := *s
	c.Timestamp = c.Timestamp.UTC().Truncate(time.Second)
	if c.Artifacts == nil {
		c.Artifacts = []Artifact{}
	}
	return canonicalStatement(&c)
}

// canonicalJSON marshals v, then re-encodes it with object keys sorted.
func canonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&generic); err != nil {
		return nil, err
	}
	// encoding/json sorts map keys; SetEscapeHTML(false) keeps bytes stable.
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(generic); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// Limits on statement content.
const (
	MaxArtifacts   = 256
	MaxStringField = 512
)

// ValidDigest reports whether s is a container digest: sha256:<64 hex>.
func ValidDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	return ok && vocab.IsSHA256Hex(h)
}

// checkArtifacts checks one artifact list: names, hashes, no repeats.
func checkArtifacts(field string, as []Artifact) error {
	if len(as) > MaxArtifacts {
		return invalid("%d %s (max %d)", len(as), field, MaxArtifacts)
	}
	seen := make(map[string]bool, len(as))
	for i, a := range as {
		if err := vocab.CheckFileName(a.Name); err != nil {
			return invalid("%s[%d].name: %v", field, i, err)
		}
		if !vocab.IsSHA256Hex(a.SHA256) {
			return invalid("%s[%d].sha256 %q is not 64 lower-case hex digits", field, i, a.SHA256)
		}
		if seen[a.Name] {
			return invalid("%s[%d].name %q repeated", field, i, a.Name)
		}
		seen[a.Name] = true
	}
	return nil
}

// checkReason allows one line of printable UTF-8 text.
func checkReason(r string) error {
	if len(r) > MaxStringField {
		return invalid("reason longer than %d bytes", MaxStringField)
	}
	if !utf8.ValidString(r) {
		return invalid("reason is not UTF-8")
	}
	for _, c := range r {
		if unicode.IsControl(c) {
			return invalid("reason holds control character %U", c)
		}
	}
	return nil
}

// ErrInvalidStatement wraps every statement validation failure.
var ErrInvalidStatement = errors.New("invalid statement")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidStatement, fmt.Sprintf(format, a...))
}

// Validate checks every field's syntax and range, and that RecipeID matches
// the recipe fields. now and skew bound the timestamp (future claims are
// rejected); a zero now skips the time check.
func (s *Statement) Validate(now time.Time, skew time.Duration) error {
	if s.Type != TypeRebuildV1 {
		return invalid("unknown type %q (want %q)", s.Type, TypeRebuildV1)
	}
	for _, c := range []struct {
		field string
		err   error
	}{
		{"package", vocab.CheckPackage(s.Package)},
		{"version", vocab.CheckVersion(s.Version)},
		{"debian_version", vocab.CheckVersion(s.DebianVersion)},
		{"suite", vocab.CheckSuite(s.Suite)},
		{"arch", vocab.CheckArch(s.Arch)},
	} {
		if c.err != nil {
			return invalid("%s: %v", c.field, c.err)
		}
	}
	if s.Opinion.Name != "" {
		if err := vocab.CheckOpinionName(s.Opinion.Name); err != nil {
			return invalid("opinion.name: %v", err)
		}
	}
	switch {
	case len(s.Opinion.CID) > MaxStringField || len(s.Opinion.Commit) > MaxStringField:
		return invalid("opinion cid/commit too long")
	case s.Opinion.Purity != "" && !s.Opinion.Purity.Valid():
		return invalid("opinion purity %q is unknown", s.Opinion.Purity)
	case !vocab.IsSHA256Hex(s.DebianSourceSHA256):
		return invalid("debian_source_sha256 %q is not 64 lower-case hex digits", s.DebianSourceSHA256)
	case !ValidDigest(s.ContainerDigest):
		return invalid("container_digest %q is not sha256:<64 hex>", s.ContainerDigest)
	case vocab.CheckFingerprint(s.Builder) != nil:
		return invalid("builder %q is not an upper-case OpenPGP fingerprint", s.Builder)
	case len(s.PeerID) > 128 || len(s.BuildinfoCID) > MaxStringField || len(s.LogCID) > MaxStringField || len(s.LockCID) > MaxStringField:
		return invalid("peer_id or cid field too long")
	case s.Timestamp.IsZero():
		return invalid("timestamp missing")
	case !now.IsZero() && s.Timestamp.After(now.Add(skew)):
		return invalid("timestamp %s is more than %s in the future", s.Timestamp.UTC().Format(time.RFC3339), skew)
	}
	if err := checkReason(s.Reason); err != nil {
		return err
	}
	switch {
	case len(s.DiffoscopeCID) > MaxStringField:
		return invalid("diffoscope_cid too long")
	case (len(s.SecondArtifacts) > 0 || s.DiffoscopeCID != "") && s.Result != ResultUnreproducible:
		return invalid("second_artifacts and diffoscope_cid belong to an unreproducible claim, not %q", s.Result)
	case len(s.Expected) > 0 && s.Result != ResultMismatch:
		return invalid("expected belongs to a mismatch report, not %q", s.Result)
	}
	switch s.Result {
	case ResultSuccess:
		if len(s.Artifacts) == 0 {
			return invalid("result success without artifacts")
		}
	case ResultFailed, ResultUnreproducible:
	case ResultMismatch:
		if len(s.Artifacts) != 1 || len(s.Expected) != 1 || s.Artifacts[0].Name != s.Expected[0].Name || s.Artifacts[0].SHA256 == s.Expected[0].SHA256 {
			return invalid("a mismatch report names one file in artifacts and the same file with another hash in expected")
		}
	default:
		return invalid("result %q is unknown", s.Result)
	}
	for _, set := range []struct {
		field string
		as    []Artifact
	}{{"artifacts", s.Artifacts}, {"second_artifacts", s.SecondArtifacts}, {"expected", s.Expected}} {
		if err := checkArtifacts(set.field, set.as); err != nil {
			return err
		}
	}
	if want := s.Recipe().ID(); s.RecipeID != want {
		return invalid("recipe_id %q does not match the recipe fields (want %s)", s.RecipeID, want)
	}
	return nil
}
