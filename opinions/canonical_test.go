package opinions

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// o3Variants are the same opinion as hello/o3.yaml written differently:
// comments, key order, flow vs block style, quoting, hex integers, explicit
// empty sections vs omitted ones.
var o3Variants = map[string]string{
	"block style, keys reordered, comments": `# a comment
revision: 1   # trailing comment
build:
  cflags:
    append:
      - "-O3"
package: hello
debian:
  version: "2.10-3"
  suite: bookworm
purity: pure-compilation
summary: 'hello built with -O3'
name: o3
`,
	"omitted empty sections, hex revision": `name: o3
package: hello
summary: hello built with -O3
purity: pure-compilation
debian: {suite: bookworm, version: 2.10-3}
revision: 0x1
build: {cflags: {append: [-O3]}}
`,
	"null sections": `name: o3
package: hello
summary: hello built with -O3
purity: pure-compilation
debian: {suite: bookworm, version: 2.10-3}
revision: 1
build:
  cflags: {append: [-O3]}
  cxxflags:
  ldflags: {append: ~}
  build_options:
  configure_args: null
patches:
source_date_epoch: ~
`,
}

// o3Changes each change one value of hello/o3.yaml.
var o3Changes = map[string][2]string{
	"summary":           {"summary: hello built with -O3", "summary: hello built with -O3."},
	"revision":          {"revision: 1", "revision: 2"},
	"flag":              {`cflags: {append: ["-O3"]}`, `cflags: {append: ["-O2"]}`},
	"flag order":        {`cflags: {append: ["-O3"]}`, `cflags: {append: ["-O3", "-g"]}`},
	"cxxflags":          {"cxxflags: {append: []}", "cxxflags: {append: [-O3]}"},
	"ldflags":           {"ldflags: {append: []}", `ldflags: {append: ["-Wl,-O1"]}`},
	"version":           {"version: 2.10-3}", "version: 2.10-2}"},
	"suite":             {"suite: bookworm", "suite: trixie"},
	"build options":     {"build_options: []", "build_options: [nocheck]"},
	"source_date_epoch": {"source_date_epoch: null", "source_date_epoch: 1700000000"},
}

func loadString(t *testing.T, pkg, name, body string) (*Opinion, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), pkg)
	writeFile(t, dir, name+".yaml", body)
	return Load(filepath.Join(dir, name+".yaml"), WithGitCommit(false))
}

func TestCIDStable(t *testing.T) {
	ref, err := Load("hello/o3.yaml", WithGitCommit(false))
	if err != nil {
		t.Fatal(err)
	}
	lock, _ := os.ReadFile("hello/o3.lock")
	for desc, body := range o3Variants {
		t.Run(desc, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hello")
			writeFile(t, dir, "o3.yaml", body)
			if lock != nil {
				// The same lock, laid out differently: not part of the identity.
				var v any
				if err := json.Unmarshal(lock, &v); err != nil {
					t.Fatal(err)
				}
				compact, _ := json.Marshal(v)
				writeFile(t, dir, "o3.lock", string(compact))
			}
			o, err := Load(filepath.Join(dir, "o3.yaml"), WithGitCommit(false))
			if err != nil {
				t.Fatalf("variant does not load: %v", err)
			}
			if !bytes.Equal(o.Canonical(), ref.Canonical()) {
				t.Errorf("canonical form differs:\n%.300s\n%.300s", o.Canonical(), ref.Canonical())
			}
			if o.CID() != ref.CID() {
				t.Errorf("CID %s, want %s", o.CID(), ref.CID())
			}
		})
	}
}

func TestCIDChanges(t *testing.T) {
	orig := readString(t, "hello/o3.yaml")
	ref, err := loadString(t, "hello", "o3", orig)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{ref.CID(): "original"}
	for desc, ch := range o3Changes {
		t.Run(desc, func(t *testing.T) {
			if !strings.Contains(orig, ch[0]) {
				t.Fatalf("hello/o3.yaml no longer contains %q", ch[0])
			}
			o, err := loadString(t, "hello", "o3", strings.Replace(orig, ch[0], ch[1], 1))
			if err != nil {
				t.Fatalf("changed opinion does not load: %v", err)
			}
			if prev, dup := seen[o.CID()]; dup {
				t.Errorf("CID %s same as for %s", o.CID(), prev)
			}
			seen[o.CID()] = desc
		})
	}
	// A different patch file content changes the sha256 and so the CID.
	g1, err := Load("hello/greeting.yaml", WithGitCommit(false))
	if err != nil {
		t.Fatal(err)
	}
	g2 := *g1
	g2.Patches = []Patch{{Path: g1.Patches[0].Path, SHA256: strings.Repeat("0", 64)}}
	if g1.CID() == g2.CID() {
		t.Errorf("patch sha256 is not part of the CID")
	}
}

func TestCIDFormat(t *testing.T) {
	// The golden value is of hello/o3 without its lock.
	body, err := os.ReadFile("hello/o3.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o, err := loadString(t, "hello", "o3", string(body))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cid.Decode(o.CID())
	if err != nil {
		t.Fatalf("CID %q does not parse: %v", o.CID(), err)
	}
	if c.Version() != 1 || c.Type() != cid.Raw || !strings.HasPrefix(o.CID(), "bafkrei") {
		t.Errorf("CID %s: version %d codec %x, want v1 raw base32", o.CID(), c.Version(), c.Type())
	}
	dec, err := mh.Decode(c.Hash())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(o.Canonical())
	if dec.Code != mh.SHA2_256 || !bytes.Equal(dec.Digest, sum[:]) {
		t.Errorf("multihash is not sha2-256 of Canonical()")
	}
	// The canonical form is JSON with sorted keys and no whitespace.
	var m map[string]any
	if err := json.Unmarshal(o.Canonical(), &m); err != nil {
		t.Fatalf("canonical form is not JSON: %v", err)
	}
	if m["type"] != CanonicalType {
		t.Errorf("canonical form has type %v", m["type"])
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, o.Canonical()); err != nil || !bytes.Equal(compact.Bytes(), o.Canonical()) {
		t.Errorf("canonical form has insignificant whitespace")
	}
	// Golden value: changing the canonical encoding changes every opinion's
	// identity, which breaks every existing claim. Do it only on purpose
	// (new CanonicalType) and update this line.
	const golden = `{"build":{"build_options":[],"cflags":{"append":["-O3"]},"configure_args":[],"cxxflags":{"append":[]},"ldflags":{"append":[]}},"debian":{"suite":"bookworm","version":"2.10-3"},"lock":null,"name":"o3","package":"hello","patches":[],"purity":"pure-compilation","revision":1,"source_date_epoch":null,"summary":"hello built with -O3","type":"lebowski.opinion/v2"}`
	if string(o.Canonical()) != golden {
		t.Errorf("canonical form changed:\n%s\nwant\n%s", o.Canonical(), golden)
	}
}

// TestCanonicalZero: an unvalidated zero Opinion still encodes (nil slices as []).
func TestCanonicalZero(t *testing.T) {
	var o Opinion
	if !bytes.Contains(o.Canonical(), []byte(`"patches":[]`)) || o.CID() == "" {
		t.Errorf("zero opinion: %s", o.Canonical())
	}
}
