package opinions

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
)

var reFuzzName = regexp.MustCompile(`(?m)^name:[ \t]*([a-z0-9]{1,64})[ \t]*$`)

// FuzzLoad writes arbitrary bytes as an opinion file into a temporary
// opinions/hello/ directory (with the real and test patch files beside it)
// and loads it. Load must never panic; an accepted opinion must satisfy the
// rules' invariants; a rejected one must be ErrInvalid, never a loader bug.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("hello/*.yaml")
	more, _ := filepath.Glob("pv/*.yaml")
	bad, _ := filepath.Glob(filepath.Join(badDir, "*.y*ml"))
	for _, p := range append(append(seeds, more...), bad...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if strings.HasPrefix(p, "pv/") { // the fuzz dir is hello/
			data = []byte(strings.Replace(string(data), "package: pv", "package: hello", 1))
		}
		f.Add(data)
	}

	dir := filepath.Join(f.TempDir(), "opinions", "hello")
	for _, p := range []string{"hello/greeting/greeting.patch", badDir + "/p/good.patch", badDir + "/p/debian.patch", badDir + "/p/notdiff.patch"} {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, badDir+"/"), "hello/")
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), data, 0o644); err != nil {
			f.Fatal(err)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		name := "x"
		if m := reFuzzName.FindSubmatch(data); m != nil {
			name = string(m[1])
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)

		o, err := Load(path, WithGitCommit(false))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("rejection is not ErrInvalid: %v", err)
			}
			if strings.Contains(err.Error(), "internal:") {
				t.Fatalf("loader bug on input %q:\n%v", data, err)
			}
			return
		}
		// Invariants of an accepted opinion.
		if o.Name != name || o.Package != "hello" {
			t.Fatalf("accepted %s/%s from %s", o.Package, o.Name, path)
		}
		if d, _ := derivedPurity(o); d != o.Purity {
			t.Fatalf("accepted purity %s, derived %s", o.Purity, d)
		}
		for _, fl := range append(append(append([]string{}, o.Build.CFlags.Append...), o.Build.CXXFlags.Append...), o.Build.LDFlags.Append...) {
			if msg, _ := checkFlag(fl); msg != "" || strings.ContainsAny(fl, shellMeta+" \t\n") {
				t.Fatalf("accepted bad flag %q", fl)
			}
		}
		if !json.Valid(o.Canonical()) {
			t.Fatalf("canonical form is not JSON: %s", o.Canonical())
		}
		if _, err := cid.Decode(o.CID()); err != nil {
			t.Fatalf("CID %q: %v", o.CID(), err)
		}
		again, err := Load(path, WithGitCommit(false))
		if err != nil || again.CID() != o.CID() {
			t.Fatalf("second load differs: %v", err)
		}
	})
}
