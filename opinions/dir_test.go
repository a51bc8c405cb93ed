package opinions

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLoadDirReal loads the repository's own opinions: they must all be
// valid, and testdata, patch directories and Go files must be ignored.
func TestLoadDirReal(t *testing.T) {
	ops, err := LoadDir(".", WithGitCommit(false))
	if err != nil {
		t.Fatalf("LoadDir(.): %v", err)
	}
	var refs []string
	for _, o := range ops {
		refs = append(refs, o.Package+"/"+o.Name)
	}
	if got, want := strings.Join(refs, " "), "hello/greeting hello/o3 pv/nonls"; got != want {
		t.Errorf("LoadDir(.) = %s, want %s", got, want)
	}
}

// newRoot makes an opinions root with hello/o3, hello/greeting (and its
// patch), pv/nonls, and other/o3 plus junk that LoadDir must skip.
func newRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range []string{"hello/o3.yaml", "hello/greeting.yaml", "hello/greeting/greeting.patch", "pv/nonls.yaml"} {
		writeFile(t, root, p, readString(t, p))
	}
	writeFile(t, root, "other/o3.yaml", strings.Replace(readString(t, "hello/o3.yaml"), "package: hello", "package: other", 1))
	writeFile(t, root, "README.md", "not an opinion")
	writeFile(t, root, "hello/notes.txt", "not an opinion")
	writeFile(t, root, "hello/greeting/ignored.yaml", "deeper files are not opinions")
	return root
}

func TestLoadDirErrors(t *testing.T) {
	root := newRoot(t)
	writeFile(t, root, "pv/broken.yaml", "name: broken\n")
	ops, err := LoadDir(root, WithGitCommit(false))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "broken.yaml") {
		t.Errorf("LoadDir error = %v, want ErrInvalid naming broken.yaml", err)
	}
	if len(ops) != 4 {
		t.Errorf("LoadDir returned %d valid opinions, want 4", len(ops))
	}
	if _, err := LoadDir(filepath.Join(root, "nope")); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("missing root: %v", err)
	}
}

func TestFind(t *testing.T) {
	root := newRoot(t)
	tests := []struct {
		desc    string
		ref     string
		want    string // package/name, or "" when an error is expected
		wantErr error
	}{
		{"qualified", "hello/greeting", "hello/greeting", nil},
		{"bare unique name", "nonls", "pv/nonls", nil},
		{"bare ambiguous name", "o3", "", ErrAmbiguous},
		{"qualified disambiguates", "other/o3", "other/o3", nil},
		{"unknown name", "nope", "", ErrNotFound},
		{"unknown package", "nope/o3", "", ErrNotFound},
		{"path traversal", "../hello/o3", "", ErrInvalid},
		{"too many parts", "hello/o3/x", "", ErrInvalid},
		{"empty", "", "", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			o, err := Find(root, tc.ref, WithGitCommit(false))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Find(%q) error = %v, want %v", tc.ref, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Find(%q): %v", tc.ref, err)
			}
			if got := o.Package + "/" + o.Name; got != tc.want {
				t.Errorf("Find(%q) = %s, want %s", tc.ref, got, tc.want)
			}
		})
	}
}

func TestLint(t *testing.T) {
	tests := []struct {
		desc  string
		paths []string
		want  int // number of problems
	}{
		{"real opinions root", []string{"."}, 0},
		{"package directory", []string{"hello"}, 0},
		{"single file", []string{"pv/nonls.yaml"}, 0},
		{"bad file", []string{"testdata/bad/hello/multi.yaml"}, 4},
		{"same file twice counts once", []string{"testdata/bad/hello/multi.yaml", "testdata/bad/hello"}, -1},
		{"missing path", []string{"nope.yaml"}, 1},
		{"an opinion without a lock", []string{unlocked(t)}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			errs := Lint(tc.paths...)
			if tc.want >= 0 && len(errs) != tc.want {
				t.Errorf("Lint(%v) = %d problems, want %d: %v", tc.paths, len(errs), tc.want, errs)
			}
			multi := 0
			for i, e := range errs {
				if strings.Contains(e.Error(), "multi.yaml:9:") {
					multi++
				}
				var a, b *Error
				if i > 0 && errors.As(errs[i-1], &a) && errors.As(e, &b) && a.File == b.File && a.Line > b.Line {
					t.Errorf("not sorted: %v before %v", a, b)
				}
			}
			if tc.want < 0 && multi != 1 {
				t.Errorf("multi.yaml's line-9 problem reported %d times, want once", multi)
			}
		})
	}
}

// TestGitCommit: Commit is the last commit of a tracked, unmodified file,
// and empty otherwise (never an error).
func TestGitCommit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	root := newRoot(t)
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", root, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	path := filepath.Join(root, "hello", "o3.yaml")

	o, err := Load(path) // not a repository yet
	if err != nil || o.Commit != "" {
		t.Fatalf("outside git: commit %q err %v", o.Commit, err)
	}
	git("init", "-q")
	if o, err = Load(path); err != nil || o.Commit != "" {
		t.Fatalf("untracked: commit %q err %v", o.Commit, err)
	}
	git("add", ".")
	git("commit", "-q", "-m", "opinions")
	head := git("rev-parse", "HEAD")
	if o, err = Load(path); err != nil || o.Commit != head {
		t.Fatalf("committed: commit %q err %v, want %s", o.Commit, err, head)
	}
	if o, err = Load(path, WithGitCommit(false)); err != nil || o.Commit != "" {
		t.Errorf("WithGitCommit(false): commit %q", o.Commit)
	}
	if err := os.WriteFile(path, []byte(readString(t, path)+"# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err = Load(path); err != nil || o.Commit != "" {
		t.Errorf("modified: commit %q err %v, want empty", o.Commit, err)
	}
	if o.Ref().String() != "hello/o3" {
		t.Errorf("Ref() = %+v", o.Ref())
	}
}

// unlocked is a copy of hello/o3 without its lock.
func unlocked(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "hello")
	writeFile(t, dir, "o3.yaml", readString(t, "hello/o3.yaml"))
	return filepath.Join(dir, "o3.yaml")
}
