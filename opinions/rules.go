package opinions

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"pault.ag/go/debian/version"
)

const maxEpoch = 253402300799 // 9999-12-31T23:59:59Z

var (
	rePatchPath = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)*$`)
	reConfArg   = regexp.MustCompile(`^--(enable|disable|with|without)-([A-Za-z0-9][A-Za-z0-9_.+-]*)(=(.*))?$`)
)

// shellMeta are the characters a shell gives meaning to. They are never
// allowed in flags or configure arguments.
const shellMeta = ";&|$`<>(){}[]*?!~\\'\"#"

// flagByte reports the bytes allowed in a flag or configure argument
// (an allow-list: everything else is rejected).
func flagByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._,:=/+%@-", c) >= 0
}

// badChar describes the first byte of s that is not allowed, or "".
func badChar(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if flagByte(c) {
			continue
		}
		switch {
		case strings.IndexByte(shellMeta, c) >= 0:
			return fmt.Sprintf("shell metacharacter '%c'", c)
		case c == '\n' || c == '\r':
			return "newline"
		case c == ' ' || c == '\t' || c == '\v' || c == '\f':
			return "whitespace"
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("control byte 0x%02x", c)
		case c >= 0x80:
			r, _ := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError {
				return fmt.Sprintf("non-ASCII byte 0x%02x", c)
			}
			return fmt.Sprintf("non-ASCII character %U", r)
		default:
			return fmt.Sprintf("character '%c'", c)
		}
	}
	return ""
}

// DeniedFlag is an entry of the compiler/linker flag deny list.
type DeniedFlag struct {
	Prefix string // a flag is denied when it starts with Prefix
	Reason string
}

// DeniedFlags are compiler flags an opinion may not append, because they
// reach outside the source tree and the build image, hide what the compiler
// runs, or undo what makes builds reproducible.
var DeniedFlags = []DeniedFlag{
	{"-fplugin", "loads a compiler plugin, code that is not in the source or the build image"},
	{"-B", "changes where the compiler finds its own programs"},
	{"-specs", "replaces the compiler's spec file"},
	{"--specs", "replaces the compiler's spec file"},
	{"-wrapper", "runs the compiler's subprograms under another program"},
	{"--sysroot", "changes where headers and libraries come from"},
	{"-isysroot", "changes where headers come from"},
	{"-iprefix", "adds include directories from outside the source tree"},
	{"-iwithprefix", "adds include directories from outside the source tree"},
	{"-iquote", "adds include directories; change the source with a patch instead"},
	{"-isystem", "adds include directories; change the source with a patch instead"},
	{"-idirafter", "adds include directories; change the source with a patch instead"},
	{"-include", "injects a file into every compilation; change the source with a patch instead"},
	{"-imacros", "injects a file into every compilation; change the source with a patch instead"},
	{"-I", "adds include directories; change the source with a patch instead"},
	{"-L", "adds library directories from outside the source tree"},
	{"-o", "redirects the compiler's output"},
	{"-save-temps", "writes intermediate files into the build tree"},
	{"-fdump-", "writes compiler dumps into the build tree"},
	{"-dump", "prints compiler information instead of compiling"},
	{"-fdebug-prefix-map", "dpkg-buildflags sets the prefix maps that make the build path-independent"},
	{"-ffile-prefix-map", "dpkg-buildflags sets the prefix maps that make the build path-independent"},
	{"-fmacro-prefix-map", "dpkg-buildflags sets the prefix maps that make the build path-independent"},
	{"-fprofile-prefix-map", "dpkg-buildflags sets the prefix maps that make the build path-independent"},
	{"-fprofile-use", "reads profile data from outside the source tree"},
	{"-fauto-profile", "reads profile data from outside the source tree"},
	{"-fprofile-generate", "writes profile data at run time to build paths"},
	{"-fprofile-dir", "reads or writes profile data outside the source tree"},
	{"-Xlinker", "passes options to the linker unchecked; use the checked -Wl, form"},
	{"-Xassembler", "passes options to the assembler unchecked; use the checked -Wa, form"},
	{"-Xpreprocessor", "passes options to the preprocessor unchecked"},
	{"-Wp,", "passes options to the preprocessor unchecked"},
	{"--ld-path", "selects a linker program by path"},
}

// DeniedToolOptions are the items of -Wl,… (linker) and -Wa,… (assembler)
// flags that are denied, for the same reasons as DeniedFlags.
var DeniedToolOptions = map[string][]DeniedFlag{
	"-Wl,": {
		{"@", "reads more options from a file"},
		{"-plugin", "loads a linker plugin"},
		{"--plugin", "loads a linker plugin"},
		{"-T", "replaces the linker script"},
		{"--script", "replaces the linker script"},
		{"-L", "adds library directories from outside the source tree"},
		{"--library-path", "adds library directories from outside the source tree"},
		{"--sysroot", "changes where libraries come from"},
		{"-rpath", "makes binaries load libraries from other directories"},
		{"--rpath", "makes binaries load libraries from other directories"},
		{"-R", "makes binaries load libraries from other directories"},
		{"-dynamic-linker", "changes the program interpreter of binaries"},
		{"--dynamic-linker", "changes the program interpreter of binaries"},
		{"-I", "changes the program interpreter of binaries"},
		{"-Map", "writes a link map into the build tree"},
		{"--Map", "writes a link map into the build tree"},
		{"--dependency-file", "writes a dependency file into the build tree"},
		{"-o", "redirects the linker's output"},
	},
	"-Wa,": {
		{"@", "reads more options from a file"},
		{"-I", "adds include directories for the assembler"},
		{"-a", "writes listings into the build tree"},
		{"--MD", "writes a dependency file into the build tree"},
		{"-o", "redirects the assembler's output"},
	},
}

// BuildOptions are the DEB_BUILD_OPTIONS words an opinion may set, with
// what they do. Besides these, hardening=… and optimize=… feature lists
// are accepted (see HardeningFeatures, OptimizeFeatures).
var BuildOptions = map[string]string{
	"nocheck":      "skip the package's test suite",
	"nodoc":        "skip building documentation",
	"noopt":        "compile with -O0",
	"nostrip":      "keep debugging symbols in the binaries",
	"noautodbgsym": "do not build -dbgsym packages",
	"terse":        "less build output",
}

// HardeningFeatures and OptimizeFeatures are the dpkg-buildflags features
// (dpkg 1.21, bookworm) that hardening=±f,… and optimize=±f,… may switch.
var (
	HardeningFeatures = []string{"all", "bindnow", "format", "fortify", "pie", "relro", "stackprotector", "stackprotectorstrong"}
	OptimizeFeatures  = []string{"all", "lto"}
)

// deniedBuildOptions explain the DEB_BUILD_OPTIONS words people reach for
// that are refused.
var deniedBuildOptions = map[string]string{
	"parallel":     "the builder fixes parallelism so that every builder builds the same way",
	"reproducible": "it could switch off the features that make builds reproducible",
	"sanitize":     "sanitizer builds change the runtime behaviour of every binary; not allowed yet",
	"qa":           "qa features change build failure rules; not allowed yet",
	"future":       "future features change the ABI; not allowed yet",
}

// DeniedConfigureFeatures are the --enable-X/--disable-X/--with-X/--without-X
// names refused in configure_args.
var DeniedConfigureFeatures = map[string]string{
	"option-checking": "debhelper passes --disable-option-checking itself; the builder relies on its own checks",
}

// validate applies the value rules to the decoded opinion. Fields that did
// not decode (not in l.pos) are skipped: their problem is already reported.
func (l *loader) validate() {
	o := &l.o
	has := func(p string) bool { _, ok := l.pos[p]; return ok }

	base := filepath.Base(l.file)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	if ext != ".yaml" {
		l.add(nil, "", fmt.Sprintf("file name %q does not end in .yaml", base), "name opinion files opinions/<package>/<name>.yaml")
	}
	dirName := filepath.Base(l.dir)
	if abs, err := filepath.Abs(l.dir); err == nil {
		dirName = filepath.Base(abs)
	}

	if has("name") {
		switch {
		case vocab.CheckOpinionName(o.Name) != nil:
			l.addAt("name", fmt.Sprintf("name must be 1 to %d lower-case letters and digits: %v", vocab.MaxOpinionNameLen, vocab.CheckOpinionName(o.Name)),
				"the name becomes part of the binary version <debver>~<name>+<revision>, where '-' and other punctuation would change how versions sort")
		case o.Name != stem:
			l.addAt("name", fmt.Sprintf("name %q differs from the file name %q", o.Name, base),
				fmt.Sprintf("rename the file to %s.yaml or set name: %s", o.Name, stem))
		}
	}
	if has("package") {
		switch {
		case !vocab.IsPackage(o.Package):
			l.addAt("package", fmt.Sprintf("%q is not a Debian source package name", o.Package),
				fmt.Sprintf("2 to %d characters: lower-case letters, digits, '+', '-', '.', starting with a letter or digit", vocab.MaxPackageLen))
		case o.Package != dirName:
			l.addAt("package", fmt.Sprintf("package %q differs from the directory name %q", o.Package, dirName),
				fmt.Sprintf("keep the file at opinions/%s/%s", o.Package, base))
		}
	}
	if has("summary") {
		s := o.Summary
		switch {
		case strings.TrimSpace(s) == "":
			l.addAt("summary", "summary is empty", "say in one line what the opinion changes")
		case len(s) > MaxSummary:
			l.addAt("summary", fmt.Sprintf("summary is %d bytes, more than %d", len(s), MaxSummary), "keep it to one short line; details go in comments")
		case !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0:
			l.addAt("summary", "summary must be one line of printable text", "remove newlines and control characters")
		}
	}
	if has("debian.suite") && vocab.CheckSuite(o.Debian.Suite) != nil {
		l.addAt("debian.suite", fmt.Sprintf("suite %q is not a Debian suite name", o.Debian.Suite), "use the code name, e.g. bookworm")
	}
	if has("debian.version") {
		l.checkVersion(o)
	}
	if has("source_date_epoch") && o.SourceDateEpoch != nil && (*o.SourceDateEpoch < 1 || *o.SourceDateEpoch > maxEpoch) {
		l.addAt("source_date_epoch", fmt.Sprintf("%d is not a positive Unix time before year 10000", *o.SourceDateEpoch),
			"write null to use the date of the last debian/changelog entry")
	}

	for _, f := range []struct {
		path  string
		flags []string
	}{
		{"build.cflags.append", o.Build.CFlags.Append},
		{"build.cxxflags.append", o.Build.CXXFlags.Append},
		{"build.ldflags.append", o.Build.LDFlags.Append},
	} {
		for i, fl := range f.flags {
			p := fmt.Sprintf("%s[%d]", f.path, i)
			if has(p) {
				if msg, hint := checkFlag(fl); msg != "" {
					l.addAt(p, msg, hint)
				}
			}
		}
	}
	l.checkBuildOptions(o.Build.BuildOptions, has)
	l.checkConfigureArgs(o.Build.ConfigureArgs, has)
	l.checkPatches(o.Patches, has)
	if has("purity") {
		l.checkPurity(o)
	}
}

func (l *loader) checkVersion(o *Opinion) {
	v := o.Debian.Version
	if err := vocab.CheckVersion(v); err != nil {
		l.addAt("debian.version", fmt.Sprintf("not a Debian version: %v", err), "copy it from apt-cache showsrc <package>, e.g. 2.10-3")
		return
	}
	bv := o.BinaryVersion()
	if vocab.CheckOpinionName(o.Name) != nil || o.Revision < 1 {
		return // reported on name and revision
	}
	// The binary version must be Debian's version with a suffix that sorts
	// below it, so an opinion build never shadows Debian's own, and it must
	// parse back into the same parts (verify reads it from the .deb).
	parsed, _ := version.Parse(v)
	bin, err := version.Parse(bv.String())
	back, ok := vocab.ParseBinaryVersion(bv.String())
	if err != nil || !ok || back != bv || bin.Epoch != parsed.Epoch || bin.Version != parsed.Version || version.Compare(bin, parsed) >= 0 {
		l.addAt("debian.version", fmt.Sprintf("binary version %q would not sort just below %q", bv, v),
			"use a name of lower-case letters and digits only")
	}
}

// checkFlag returns a problem with one compiler/linker flag, or "".
func checkFlag(f string) (msg, hint string) {
	const verbatim = "flags are passed verbatim to the compiler; remove it"
	switch {
	case f == "":
		return "empty flag", "remove the empty entry"
	case len(f) > MaxItemLen:
		return fmt.Sprintf("flag is %d bytes, more than %d", len(f), MaxItemLen), ""
	case f[0] != '-':
		return fmt.Sprintf("flag %q does not start with '-'", f), "each entry is one compiler option such as -O3; @file and bare words are not allowed"
	}
	if c := badChar(f); c != "" {
		return c + " in flag", verbatim
	}
	for _, d := range DeniedFlags {
		if strings.HasPrefix(f, d.Prefix) {
			return fmt.Sprintf("flag %q is not allowed: it %s", f, d.Reason), "see the deny list in docs/OPINIONS.md"
		}
	}
	if strings.HasPrefix(f, "-fuse-ld=") && strings.Contains(f, "/") {
		return fmt.Sprintf("flag %q is not allowed: it selects a linker program by path", f), "name the linker, e.g. -fuse-ld=gold"
	}
	for tool, denied := range DeniedToolOptions {
		rest, ok := strings.CutPrefix(f, tool)
		if !ok {
			continue
		}
		for _, item := range strings.Split(rest, ",") {
			for _, d := range denied {
				if strings.HasPrefix(item, d.Prefix) {
					return fmt.Sprintf("%s option %q is not allowed: it %s", strings.TrimSuffix(tool, ","), item, d.Reason), "see the deny list in docs/OPINIONS.md"
				}
			}
		}
	}
	return "", ""
}

func (l *loader) checkBuildOptions(opts []string, has func(string) bool) {
	seen := map[string]bool{}
	for i, w := range opts {
		p := fmt.Sprintf("build.build_options[%d]", i)
		if !has(p) {
			continue
		}
		key, val, hasVal := strings.Cut(w, "=")
		if seen[key] {
			l.addAt(p, fmt.Sprintf("build option %q is given twice", key), "merge the entries")
			continue
		}
		seen[key] = true
		if reason, denied := deniedBuildOptions[key]; denied {
			l.addAt(p, fmt.Sprintf("build option %q is not allowed: %s", w, reason), "allowed: "+allowedBuildOptionsList())
			continue
		}
		switch key {
		case "hardening", "optimize":
			feats := HardeningFeatures
			if key == "optimize" {
				feats = OptimizeFeatures
			}
			if msg := checkFeatures(val, hasVal, feats); msg != "" {
				l.addAt(p, fmt.Sprintf("build option %q: %s", w, msg), fmt.Sprintf("write %s=+feature,-feature with features from: %s", key, strings.Join(feats, ", ")))
			}
			continue
		}
		if _, ok := BuildOptions[w]; !ok {
			l.addAt(p, fmt.Sprintf("build option %q is not in the allow-list", w), "allowed: "+allowedBuildOptionsList())
		}
	}
}

func allowedBuildOptionsList() string {
	words := make([]string, 0, len(BuildOptions)+2)
	for w := range BuildOptions {
		words = append(words, w)
	}
	sort.Strings(words)
	return strings.Join(append(words, "hardening=±feature,…", "optimize=±lto"), ", ")
}

func checkFeatures(val string, hasVal bool, feats []string) string {
	if !hasVal || val == "" {
		return "no features given"
	}
	for _, item := range strings.Split(val, ",") {
		if len(item) < 2 || (item[0] != '+' && item[0] != '-') {
			return fmt.Sprintf("feature %q must start with + or -", item)
		}
		found := false
		for _, f := range feats {
			found = found || f == item[1:]
		}
		if !found {
			return fmt.Sprintf("unknown feature %q", item[1:])
		}
	}
	return ""
}

func (l *loader) checkConfigureArgs(args []string, has func(string) bool) {
	seen := map[string]bool{}
	for i, a := range args {
		p := fmt.Sprintf("build.configure_args[%d]", i)
		if !has(p) {
			continue
		}
		switch {
		case a == "":
			l.addAt(p, "empty configure argument", "remove the empty entry")
			continue
		case len(a) > MaxItemLen:
			l.addAt(p, fmt.Sprintf("configure argument is %d bytes, more than %d", len(a), MaxItemLen), "")
			continue
		case !strings.HasPrefix(a, "--"):
			l.addAt(p, fmt.Sprintf("configure argument %q does not start with --", a),
				"only --enable-X, --disable-X, --with-X and --without-X are accepted; no variables or positional arguments")
			continue
		}
		if c := badChar(a); c != "" {
			l.addAt(p, c+" in configure argument", "arguments are passed verbatim to configure; remove it")
			continue
		}
		m := reConfArg.FindStringSubmatch(a)
		if m == nil {
			l.addAt(p, fmt.Sprintf("configure argument %q is not --enable-X, --disable-X, --with-X or --without-X", a),
				"path and platform options (--prefix, --libdir, --host …) are set by debhelper and cannot be changed")
			continue
		}
		feature := m[2]
		if reason, denied := DeniedConfigureFeatures[feature]; denied {
			l.addAt(p, fmt.Sprintf("configure argument %q is not allowed: %s", a, reason), "remove it")
			continue
		}
		if seen[feature] {
			l.addAt(p, fmt.Sprintf("configure feature %q is set twice", feature), "keep one argument per feature")
			continue
		}
		seen[feature] = true
	}
}

func (l *loader) checkPatches(patches []Patch, has func(string) bool) {
	seen := map[string]bool{}
	for i, pt := range patches {
		base := fmt.Sprintf("patches[%d]", i)
		pp, sp := base+".path", base+".sha256"
		if has(sp) && !vocab.IsSHA256Hex(pt.SHA256) {
			l.addAt(sp, fmt.Sprintf("%q is not a sha256 (64 lower-case hex digits)", pt.SHA256), "compute it with sha256sum")
		}
		if !has(pp) {
			continue
		}
		if msg, hint := checkPatchPath(pt.Path); msg != "" {
			l.addAt(pp, msg, hint)
			continue
		}
		if seen[pt.Path] {
			l.addAt(pp, fmt.Sprintf("patch %q is listed twice", pt.Path), "list each patch once")
			continue
		}
		seen[pt.Path] = true
		data, msg, hint := readPatch(l.dir, pt.Path)
		if msg != "" {
			l.addAt(pp, msg, hint)
			continue
		}
		sum := sha256.Sum256(data)
		actual := hex.EncodeToString(sum[:])
		if l.o.patchData == nil {
			l.o.patchData = map[string][]byte{}
		}
		l.o.patchData[pt.Path] = data
		if has(sp) && vocab.IsSHA256Hex(pt.SHA256) && actual != pt.SHA256 {
			l.addAt(sp, fmt.Sprintf("sha256 mismatch for %s: opinion says %s, file has %s", pt.Path, pt.SHA256, actual),
				"if you changed the patch on purpose, set the new sha256 and raise revision")
		}
		if msg, hint := checkPatchContent(data); msg != "" {
			l.addAt(pp, fmt.Sprintf("patch %s: %s", pt.Path, msg), hint)
		}
	}
}

func checkPatchPath(p string) (msg, hint string) {
	const where = "patch paths are relative to the opinion's directory opinions/<package>/, e.g. myopinion/fix.patch"
	switch {
	case p == "":
		return "empty patch path", where
	case strings.HasPrefix(p, "/"):
		return fmt.Sprintf("patch path %q is absolute", p), where
	case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return fmt.Sprintf("patch path %q leaves the opinion's directory", p), where
	case len(p) > MaxItemLen || !rePatchPath.MatchString(p):
		return fmt.Sprintf("patch path %q may only contain letters, digits, '.', '_', '+', '-' and '/' (no segment starting with '.')", p), where
	}
	return "", ""
}

// readPatch reads dir/rel, refusing symlinks anywhere below dir, non-regular
// files and files over MaxPatchSize.
func readPatch(dir, rel string) (data []byte, msg, hint string) {
	cur := dir
	parts := strings.Split(rel, "/")
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			if os.IsNotExist(err) {
				return nil, fmt.Sprintf("patch file %s does not exist", cur), "add the file or fix the path"
			}
			return nil, fmt.Sprintf("cannot read patch file %s: %v", cur, err), ""
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			return nil, fmt.Sprintf("%s is a symlink", cur), "patches must be plain files inside the opinion's directory"
		case i < len(parts)-1 && !fi.IsDir():
			return nil, fmt.Sprintf("%s is not a directory", cur), ""
		case i == len(parts)-1 && !fi.Mode().IsRegular():
			return nil, fmt.Sprintf("%s is not a regular file", cur), "patches must be plain files"
		case i == len(parts)-1 && fi.Size() > MaxPatchSize:
			return nil, fmt.Sprintf("patch file %s is %d bytes, more than %d", cur, fi.Size(), MaxPatchSize), "split it or make it smaller"
		}
	}
	f, err := os.Open(cur)
	if err != nil {
		return nil, fmt.Sprintf("cannot read patch file %s: %v", cur, err), ""
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, MaxPatchSize+1))
	if err != nil {
		return nil, fmt.Sprintf("cannot read patch file %s: %v", cur, err), ""
	}
	if len(data) > MaxPatchSize {
		return nil, fmt.Sprintf("patch file %s is larger than %d bytes", cur, MaxPatchSize), "split it or make it smaller"
	}
	return data, "", ""
}

// checkPatchContent requires a -p1 unified diff that only touches files
// inside the upstream source (not debian/), with no binary or symlink parts.
// Hunk bodies are skipped by their line counts, so a removed line that
// starts with "-- " is not mistaken for a file header.
func checkPatchContent(data []byte) (msg, hint string) {
	const p1 = "write a -p1 unified diff (diff -u a/file b/file, or quilt refresh)"
	lines := strings.Split(string(data), "\n")
	hunks, files := 0, 0
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSuffix(lines[i], "\r")
		switch {
		case strings.HasPrefix(line, "@@ "):
			m := reHunk.FindStringSubmatch(line)
			if m == nil {
				return fmt.Sprintf("malformed hunk header %q", line), p1
			}
			oldN, newN := hunkCount(m[1]), hunkCount(m[2])
			hunks++
			for oldN > 0 || newN > 0 {
				i++
				if i >= len(lines) {
					return "last hunk is shorter than its header says", p1
				}
				body := lines[i]
				switch {
				case body == "" || body[0] == ' ':
					oldN--
					newN--
				case body[0] == '-':
					oldN--
				case body[0] == '+':
					newN--
				case body[0] == '\\': // "\ No newline at end of file"
				default:
					return fmt.Sprintf("hunk ends early at line %d", i+1), p1
				}
				if oldN < 0 || newN < 0 {
					return fmt.Sprintf("hunk at line %d does not match its header", i+1), p1
				}
			}
		case strings.HasPrefix(line, "GIT binary patch") || strings.HasPrefix(line, "Binary files "):
			return "binary patches are not supported", "patch text files only"
		case (strings.HasPrefix(line, "new file mode ") || strings.HasPrefix(line, "new mode ")) && strings.HasSuffix(line, "120000"):
			return "patches may not create symlinks", ""
		case strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "+++ "):
			name, _, _ := strings.Cut(line[4:], "\t")
			name = strings.TrimSpace(name)
			if name == "/dev/null" {
				continue
			}
			if strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
				return fmt.Sprintf("file name %q leaves the source tree", name), p1
			}
			_, rest, ok := strings.Cut(name, "/")
			if !ok || rest == "" {
				return fmt.Sprintf("file name %q has no leading directory to strip with -p1", name), p1
			}
			if rest == "debian" || strings.HasPrefix(rest, "debian/") {
				return fmt.Sprintf("patch changes %s", rest), "opinions change the upstream source; packaging changes go through build flags, build_options and configure_args"
			}
			if strings.HasPrefix(line, "+++ ") {
				files++
			}
		}
	}
	if files == 0 || hunks == 0 {
		return "not a unified diff (no ---/+++ headers or @@ hunks)", p1
	}
	return "", ""
}

var reHunk = regexp.MustCompile(`^@@ -[0-9]+(,[0-9]+)? \+[0-9]+(,[0-9]+)? @@`)

// hunkCount turns a hunk header's ",N" (or "") into N (default 1).
func hunkCount(s string) int {
	if s == "" {
		return 1
	}
	n := 0
	for _, c := range s[1:] {
		n = n*10 + int(c-'0')
		if n > MaxPatchSize {
			return MaxPatchSize
		}
	}
	return n
}

// derivedPurity is the purity the content implies, with the reason.
func derivedPurity(o *Opinion) (vocab.Purity, string) {
	switch {
	case len(o.Patches) > 0:
		return vocab.PurityPatches, "has patches"
	case len(o.Build.ConfigureArgs) > 0:
		return vocab.PurityConfigureOnly, "has configure_args"
	}
	return vocab.PurityPureCompilation, "has no patches or configure_args"
}

func (l *loader) checkPurity(o *Opinion) {
	if !o.Purity.Valid() {
		l.addAt("purity", fmt.Sprintf("unknown purity %q", o.Purity), "one of pure-compilation, configure-only, patches")
		return
	}
	if d, why := derivedPurity(o); d != o.Purity {
		l.addAt("purity", fmt.Sprintf("declares %s but %s: declare %s", o.Purity, why, d),
			"purity must say what the opinion really does, so that builders and users can weigh it")
	}
}
