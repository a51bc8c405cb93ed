package opinions

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

const badDir = "testdata/bad/hello"

// TestLoadBad loads every deliberately bad opinion under testdata/bad and
// checks the reported field, line and message.
func TestLoadBad(t *testing.T) {
	tests := []struct {
		desc  string
		file  string
		field string
		line  int
		msg   string
	}{
		{"unknown top-level key", "unknownkey.yaml", "buidl", 7, `unknown field "buidl"`},
		{"string where an integer belongs", "wrongtype.yaml", "revision", 6, "must be an integer"},
		{"required field missing", "missing.yaml", "debian", 1, "required field is missing"},
		{"key given twice", "duplicate.yaml", "name", 7, "given twice"},
		{"name not lower-case alnum", "badname.yaml", "name", 1, "lower-case letters and digits"},
		{"name with '-' breaks the version scheme", "no-nls.yaml", "name", 1, "lower-case letters and digits"},
		{"name differs from file name", "mismatch.yaml", "name", 1, `differs from the file name "mismatch.yaml"`},
		{"package not a Debian name", "badpackage.yaml", "package", 2, "not a Debian source package name"},
		{"package differs from directory", "pkgdir.yaml", "package", 2, `differs from the directory name "hello"`},
		{"unknown purity", "badpurity.yaml", "purity", 4, `unknown purity "impure"`},
		{"purity lie: configure args", "puritylie.yaml", "purity", 4, "declares pure-compilation but has configure_args: declare configure-only"},
		{"purity lie: patches", "puritypatch.yaml", "purity", 4, "declares configure-only but has patches: declare patches"},
		{"purity overclaims patches", "puritypatches.yaml", "purity", 4, "declares patches but has no patches or configure_args: declare pure-compilation"},
		{"suite not a word", "badsuite.yaml", "debian.suite", 5, "not a Debian suite name"},
		{"version with empty revision", "badversion.yaml", "debian.version", 5, "not a Debian version"},
		{"revision zero", "revisionzero.yaml", "revision", 6, "out of range"},
		{"shell metacharacter in flag", "flagmeta.yaml", "build.cflags.append[1]", 11, "shell metacharacter ';' in flag"},
		{"command substitution in flag", "flagsubst.yaml", "build.cflags.append[0]", 8, "shell metacharacter '$' in flag"},
		{"flag without dash", "flagnodash.yaml", "build.cxxflags.append[0]", 8, "does not start with '-'"},
		{"compiler plugin", "flagplugin.yaml", "build.cflags.append[0]", 8, "loads a compiler plugin"},
		{"spec file", "flagspecs.yaml", "build.cflags.append[0]", 8, "spec file"},
		{"-B program prefix", "flagprefix.yaml", "build.cflags.append[0]", 8, "finds its own programs"},
		{"-wrapper", "flagwrapper.yaml", "build.cflags.append[0]", 8, "under another program"},
		{"linker rpath", "wlrpath.yaml", "build.ldflags.append[1]", 8, `-Wl option "-rpath" is not allowed`},
		{"non-ASCII flag", "flagnonascii.yaml", "build.cflags.append[0]", 8, "non-ASCII character U+00E9"},
		{"two flags in one entry", "flagspace.yaml", "build.cflags.append[0]", 8, "whitespace in flag"},
		{"parallel= build option", "buildparallel.yaml", "build.build_options[1]", 8, "fixes parallelism"},
		{"unknown build option", "buildunknown.yaml", "build.build_options[0]", 8, "not in the allow-list"},
		{"unknown hardening feature", "buildhardening.yaml", "build.build_options[0]", 8, `unknown feature "foo"`},
		{"configure variable assignment", "confnodash.yaml", "build.configure_args[0]", 8, "does not start with --"},
		{"configure --prefix", "confprefix.yaml", "build.configure_args[0]", 8, "is not --enable-X"},
		{"backtick in configure arg", "confmeta.yaml", "build.configure_args[0]", 8, "shell metacharacter '`'"},
		{"absolute patch path", "patchabs.yaml", "patches[0].path", 8, "is absolute"},
		{"patch path with ..", "patchdotdot.yaml", "patches[0].path", 8, "leaves the opinion's directory"},
		{"patch sha256 mismatch", "patchsha.yaml", "patches[0].sha256", 9, "file has 265ba6f0a7d8bd713a27fd7ab4fd69df5b86600e96f05c0bb0ec73866c8633e9"},
		{"patch sha256 not hex", "patchshaformat.yaml", "patches[0].sha256", 9, "not a sha256"},
		{"patch file missing", "patchmissing.yaml", "patches[0].path", 8, "does not exist"},
		{"patch edits debian/", "patchdebian.yaml", "patches[0].path", 8, "patch changes debian/rules"},
		{"patch is not a diff", "patchnotdiff.yaml", "patches[0].path", 8, "not a unified diff"},
		{"negative SOURCE_DATE_EPOCH", "sdeneg.yaml", "source_date_epoch", 7, "not a positive Unix time"},
		{"string SOURCE_DATE_EPOCH", "sdestring.yaml", "source_date_epoch", 7, "must be an integer"},
		{"empty summary", "summaryempty.yaml", "summary", 3, "summary is empty"},
		{"YAML anchor", "alias.yaml", "build.cflags", 8, "anchor &f"},
		{"YAML alias", "alias.yaml", "build.cxxflags", 9, "alias *f"},
		{"two documents", "multidoc.yaml", "", 7, "more than one YAML document"},
		{"syntax error", "syntax.yaml", "", 3, "YAML syntax"},
		{"explicit tag", "tagged.yaml", "build.cflags.append[0]", 8, "explicit YAML tag"},
		{"empty file", "empty.yaml", "", 0, "file is empty"},
		{"list instead of mapping", "notmapping.yaml", "", 1, "must be a mapping"},
		{"wrong extension", "wrongext.yml", "", 0, "does not end in .yaml"},
		{"several problems: purity", "multi.yaml", "purity", 4, "declares pure-compilation"},
		{"several problems: revision", "multi.yaml", "revision", 6, "out of range"},
		{"several problems: flag", "multi.yaml", "build.cflags.append[0]", 8, "shell metacharacter ';'"},
		{"several problems: parallel", "multi.yaml", "build.build_options[0]", 9, "parallel=4"},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		covered[tc.file] = true
		t.Run(tc.desc, func(t *testing.T) {
			path := filepath.Join(badDir, tc.file)
			o, err := Load(path, WithGitCommit(false))
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", path, o)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load(%s) error %v does not unwrap to ErrInvalid", path, err)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Load(%s) error %T is not an ErrorList", path, err)
			}
			for _, e := range list {
				if e.Field == tc.field && e.Line == tc.line && strings.Contains(e.Msg, tc.msg) {
					if e.File != path {
						t.Errorf("error names file %q, want %q", e.File, path)
					}
					if !strings.HasPrefix(e.Error(), path+":") {
						t.Errorf("Error() = %q, want it to start with %q", e.Error(), path+":")
					}
					return
				}
			}
			t.Errorf("Load(%s) reported\n%v\nwant a problem in field %q at line %d containing %q", path, err, tc.field, tc.line, tc.msg)
		})
	}

	// Every bad file has a row, so adding one without a test fails.
	entries, err := os.ReadDir(badDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && !covered[e.Name()] {
			t.Errorf("%s/%s has no row in TestLoadBad", badDir, e.Name())
		}
	}
}

// TestLoadBadSorted: a file with several problems reports all of them,
// sorted by line.
func TestLoadBadSorted(t *testing.T) {
	_, err := Load(filepath.Join(badDir, "multi.yaml"), WithGitCommit(false))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("want ErrorList, got %v", err)
	}
	if len(list) != 4 {
		t.Errorf("got %d problems, want 4:\n%v", len(list), err)
	}
	if !sort.SliceIsSorted(list, func(i, j int) bool { return list[i].Line < list[j].Line }) {
		t.Errorf("problems not sorted by line:\n%v", err)
	}
}

func TestLoadRealOpinions(t *testing.T) {
	tests := []struct {
		desc    string
		path    string
		purity  vocab.Purity
		version string
		binary  string
	}{
		{"pure-compilation -O3", "hello/o3.yaml", vocab.PurityPureCompilation, "2.10-3", "2.10-3~o3+1"},
		{"patches: greeting", "hello/greeting.yaml", vocab.PurityPatches, "2.10-3", "2.10-3~greeting+1"},
		{"configure-only: pv without NLS", "pv/nonls.yaml", vocab.PurityConfigureOnly, "1.6.20-1", "1.6.20-1~nonls+1"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			o, err := Load(tc.path, WithGitCommit(false))
			if err != nil {
				t.Fatalf("Load(%s): %v", tc.path, err)
			}
			if o.Purity != tc.purity || o.Debian.Version != tc.version || o.Debian.Suite != "bookworm" {
				t.Errorf("got purity %s version %s suite %s", o.Purity, o.Debian.Version, o.Debian.Suite)
			}
			if got := o.BinaryVersion().String(); got != tc.binary {
				t.Errorf("BinaryVersion() = %s, want %s", got, tc.binary)
			}
			if o.Path != tc.path || o.Dir != filepath.Dir(tc.path) {
				t.Errorf("Path %q Dir %q", o.Path, o.Dir)
			}
			for _, p := range o.Patches {
				data, err := os.ReadFile(filepath.Join(o.Dir, p.Path))
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				if hex.EncodeToString(sum[:]) != p.SHA256 {
					t.Errorf("patch %s sha256 not checked", p.Path)
				}
			}
		})
	}
}

// writeFile writes content to dir/rel, creating directories.
func writeFile(t *testing.T, dir, rel, content string) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

const header = `name: x
package: hello
summary: test opinion
debian: {suite: bookworm, version: 2.10-3}
revision: 1
`

const smallPatch = `Description: test
--- a/src/hello.c
+++ b/src/hello.c
@@ -1,3 +1,3 @@
 a
--- b
+++ c
 d
`

// TestRules loads generated opinions (hello/x.yaml in a temp dir) to check
// each rule's accept and reject sides, including the cases that need the
// file system (symlinks, sizes) and cannot live in testdata.
func TestRules(t *testing.T) {
	type setup func(t *testing.T, dir string) // dir is <tmp>/hello
	patchOpinion := func(path, sum string) string {
		return header + "purity: patches\npatches:\n  - path: " + path + "\n    sha256: " + sum + "\n"
	}
	tests := []struct {
		desc  string
		body  string
		setup setup
		field string // "" = valid
		msg   string
	}{
		{desc: "minimal valid", body: header + "purity: pure-compilation\n"},
		{desc: "null sections are empty", body: header + "purity: pure-compilation\nbuild:\npatches:\nsource_date_epoch:\n"},
		{desc: "good flags", body: header + "purity: pure-compilation\nbuild:\n  cflags: {append: [-O3, -march=x86-64-v2, -fno-omit-frame-pointer, -D_FORTIFY_SOURCE=3, -flto=auto, --param=max-inline-insns-single=500]}\n  ldflags: {append: [\"-Wl,-z,now\", \"-Wl,--as-needed\", -fuse-ld=gold]}\n  cxxflags: {append: [-std=gnu++17, \"-Wa,--noexecstack\"]}\n"},
		{desc: "good build options", body: header + "purity: pure-compilation\nbuild:\n  build_options: [nocheck, nodoc, noopt, nostrip, noautodbgsym, terse, \"hardening=+all,-format\", optimize=+lto]\n"},
		{desc: "good configure args", body: header + "purity: configure-only\nbuild:\n  configure_args: [--disable-nls, --enable-foo=yes, --with-ssl=openssl, --without-x]\n"},
		{desc: "SOURCE_DATE_EPOCH set", body: header + "purity: pure-compilation\nsource_date_epoch: 1700000000\n"},
		{desc: "-include denied", body: header + "purity: pure-compilation\nbuild:\n  cflags: {append: [-include, stdio.h]}\n", field: "build.cflags.append[0]", msg: "injects a file"},
		{desc: "prefix map denied", body: header + "purity: pure-compilation\nbuild:\n  cflags: {append: [-ffile-prefix-map=/a=/b]}\n", field: "build.cflags.append[0]", msg: "path-independent"},
		{desc: "-Xlinker denied", body: header + "purity: pure-compilation\nbuild:\n  ldflags: {append: [-Xlinker]}\n", field: "build.ldflags.append[0]", msg: "unchecked"},
		{desc: "-Wl,@file denied", body: header + "purity: pure-compilation\nbuild:\n  ldflags: {append: [\"-Wl,@opts\"]}\n", field: "build.ldflags.append[0]", msg: "from a file"},
		{desc: "-fuse-ld path denied", body: header + "purity: pure-compilation\nbuild:\n  ldflags: {append: [-fuse-ld=/tmp/ld]}\n", field: "build.ldflags.append[0]", msg: "by path"},
		{desc: "newline in flag", body: header + "purity: pure-compilation\nbuild:\n  cflags: {append: [\"-O3\\n-O2\"]}\n", field: "build.cflags.append[0]", msg: "newline"},
		{desc: "control byte in flag", body: header + "purity: pure-compilation\nbuild:\n  cflags: {append: [\"-O\\x01\"]}\n", field: "build.cflags.append[0]", msg: "control byte 0x01"},
		{desc: "empty flag", body: header + "purity: pure-compilation\nbuild:\n  cflags: {append: [\"\"]}\n", field: "build.cflags.append[0]", msg: "empty flag"},
		{desc: "list item not a string", body: header + "purity: pure-compilation\nbuild:\n  cflags: {append: [[-O3]]}\n", field: "build.cflags.append[0]", msg: "must be a string"},
		{desc: "flags not a mapping", body: header + "purity: pure-compilation\nbuild:\n  cflags: [-O3]\n", field: "build.cflags", msg: "must be a mapping"},
		{desc: "unknown nested key", body: header + "purity: pure-compilation\nbuild:\n  cflags: {prepend: [-O3]}\n", field: "build.cflags.prepend", msg: "unknown field"},
		{desc: "reproducible= denied", body: header + "purity: pure-compilation\nbuild:\n  build_options: [reproducible=-timeless]\n", field: "build.build_options[0]", msg: "reproducible"},
		{desc: "hardening without sign", body: header + "purity: pure-compilation\nbuild:\n  build_options: [hardening=all]\n", field: "build.build_options[0]", msg: "must start with + or -"},
		{desc: "build option twice", body: header + "purity: pure-compilation\nbuild:\n  build_options: [nocheck, nocheck]\n", field: "build.build_options[1]", msg: "given twice"},
		{desc: "configure option-checking", body: header + "purity: configure-only\nbuild:\n  configure_args: [--enable-option-checking=fatal]\n", field: "build.configure_args[0]", msg: "not allowed"},
		{desc: "configure abbreviation of --prefix", body: header + "purity: configure-only\nbuild:\n  configure_args: [--pre=/opt]\n", field: "build.configure_args[0]", msg: "is not --enable-X"},
		{desc: "configure feature twice", body: header + "purity: configure-only\nbuild:\n  configure_args: [--enable-nls, --disable-nls]\n", field: "build.configure_args[1]", msg: "set twice"},
		{desc: "configure value with space", body: header + "purity: configure-only\nbuild:\n  configure_args: [\"--with-x=a b\"]\n", field: "build.configure_args[0]", msg: "whitespace"},
		{desc: "revision too large", body: strings.Replace(header, "revision: 1", "revision: 99999999999999999999", 1) + "purity: pure-compilation\n", field: "revision", msg: "must be an integer"},
		{desc: "revision negative", body: strings.Replace(header, "revision: 1", "revision: -1", 1) + "purity: pure-compilation\n", field: "revision", msg: "out of range"},
		{desc: "version with epoch", body: strings.Replace(header, "2.10-3", "1:2.10-3", 1) + "purity: pure-compilation\n"},
		{desc: "version not starting with digit", body: strings.Replace(header, "2.10-3", "v2.10-3", 1) + "purity: pure-compilation\n", field: "debian.version", msg: "not a Debian version"},
		{desc: "summary with newline", body: strings.Replace(header, "summary: test opinion", "summary: \"two\\nlines\"", 1) + "purity: pure-compilation\n", field: "summary", msg: "one line"},
		{desc: "summary too long", body: strings.Replace(header, "summary: test opinion", "summary: "+strings.Repeat("a", MaxSummary+1), 1) + "purity: pure-compilation\n", field: "summary", msg: "more than"},
		{desc: "source_date_epoch too far", body: header + "purity: pure-compilation\nsource_date_epoch: 253402300800\n", field: "source_date_epoch", msg: "before year 10000"},
		{
			desc: "valid patch in a subdirectory", body: patchOpinion("x/fix.patch", sha(smallPatch)),
			setup: func(t *testing.T, dir string) { writeFile(t, dir, "x/fix.patch", smallPatch) },
		},
		{
			desc: "patch path with ./", body: patchOpinion("./x/fix.patch", sha(smallPatch)), field: "patches[0].path", msg: "may only contain",
			setup: func(t *testing.T, dir string) { writeFile(t, dir, "x/fix.patch", smallPatch) },
		},
		{
			desc: "patch is a symlink", body: patchOpinion("x/fix.patch", sha(smallPatch)), field: "patches[0].path", msg: "is a symlink",
			setup: func(t *testing.T, dir string) {
				real := writeFile(t, t.TempDir(), "fix.patch", smallPatch)
				os.MkdirAll(filepath.Join(dir, "x"), 0o755)
				if err := os.Symlink(real, filepath.Join(dir, "x/fix.patch")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			desc: "patch directory is a symlink", body: patchOpinion("x/fix.patch", sha(smallPatch)), field: "patches[0].path", msg: "is a symlink",
			setup: func(t *testing.T, dir string) {
				outside := t.TempDir()
				writeFile(t, outside, "fix.patch", smallPatch)
				if err := os.Symlink(outside, filepath.Join(dir, "x")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			desc: "patch is a directory", body: patchOpinion("x", sha(smallPatch)), field: "patches[0].path", msg: "not a regular file",
			setup: func(t *testing.T, dir string) { writeFile(t, dir, "x/fix.patch", smallPatch) },
		},
		{
			desc: "patch too large", body: patchOpinion("big.patch", sha(smallPatch)), field: "patches[0].path", msg: "more than",
			setup: func(t *testing.T, dir string) {
				writeFile(t, dir, "big.patch", smallPatch+strings.Repeat("x", MaxPatchSize))
			},
		},
		{
			desc: "patch creating a symlink", body: patchOpinion("s.patch", sha("diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc/passwd\n")),
			field: "patches[0].path", msg: "symlinks",
			setup: func(t *testing.T, dir string) {
				writeFile(t, dir, "s.patch", "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc/passwd\n")
			},
		},
		{
			desc: "patch with absolute target", body: patchOpinion("a.patch", sha("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n")),
			field: "patches[0].path", msg: "leaves the source tree",
			setup: func(t *testing.T, dir string) {
				writeFile(t, dir, "a.patch", "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n")
			},
		},
		{
			desc: "patch hunk shorter than header", body: patchOpinion("h.patch", sha("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n-a\n+b\nzzz\n")),
			field: "patches[0].path", msg: "hunk ends early",
			setup: func(t *testing.T, dir string) {
				writeFile(t, dir, "h.patch", "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n-a\n+b\nzzz\n")
			},
		},
		{
			desc: "opinion file is a symlink", body: "", field: "", msg: "not a regular file",
			setup: func(t *testing.T, dir string) {
				real := writeFile(t, t.TempDir(), "x.yaml", header+"purity: pure-compilation\n")
				if err := os.Symlink(real, filepath.Join(dir, "x.yaml")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			desc: "opinion file too large", body: header + "purity: pure-compilation\n# " + strings.Repeat("x", MaxFileSize) + "\n",
			field: "", msg: "larger than",
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hello")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			path := filepath.Join(dir, "x.yaml")
			if tc.body != "" {
				writeFile(t, dir, "x.yaml", tc.body)
			}
			o, err := Load(path, WithGitCommit(false))
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				if o.Name != "x" || o.Package != "hello" {
					t.Errorf("got %s/%s", o.Package, o.Name)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("want ErrorList, got %T", err)
			}
			for _, e := range list {
				if e.Field == tc.field && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("got\n%v\nwant a problem in %q containing %q", err, tc.field, tc.msg)
		})
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{File: "opinions/hello/o3.yaml", Line: 7, Column: 3, Field: "build.cflags.append[0]",
		Msg: "shell metacharacter ';' in flag", Hint: "flags are passed verbatim to the compiler; remove it"}
	want := "opinions/hello/o3.yaml:7:3: build.cflags.append[0]: shell metacharacter ';' in flag (hint: flags are passed verbatim to the compiler; remove it)"
	if got := e.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	if got := (&Error{File: "f.yaml", Msg: "file is empty"}).Error(); got != "f.yaml: file is empty" {
		t.Errorf("whole-file error = %q", got)
	}
	var err error = ErrorList{e}
	var target *Error
	if !errors.As(err, &target) || target != e {
		t.Errorf("errors.As(ErrorList, *Error) failed")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("ErrorList does not unwrap to ErrInvalid")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "hello", "nope.yaml"))
	if err == nil || errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want a wrapped fs.ErrNotExist that is not ErrInvalid", err)
	}
}
