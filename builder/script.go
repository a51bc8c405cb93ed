package builder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/opinions"
)

// Fixed paths inside the build container.
const (
	containerBuildDir = "/build"
	containerScript   = "/build/lebowski/run.sh"
	containerLog      = "/build/build.log"
	stageFile         = "stage"   // last stage the script entered
	refusedFile       = "refused" // why the script refused the opinion
	exitRefused       = 65
)

// Changelog maintainer of opinion entries.
const ChangelogMaintainer = "Lebowski <opinions@lebowski.invalid>"

// Limits on what an opinion may carry into a build.
const (
	maxFlags     = 64
	maxFlagLen   = 256
	maxPatches   = 64
	maxPatchSize = 16 << 20
)

// reFlag is the builder's own allow-list for compiler flags and configure
// arguments (independent of the opinion loader's check: defense in
// depth). No shell or make metacharacters, no whitespace, no '$'.
var (
	reFlag        = regexp.MustCompile(`^[A-Za-z0-9_.,:=+/@%-]+$`)
	reFeatureList = regexp.MustCompile(`^[+-][a-z]+(,[+-][a-z]+)*$`)
)

// appliedOpinion is an opinion re-checked by the builder: what goes into
// the container.
type appliedOpinion struct {
	name, cid, summary    string
	binaryVersion         string
	cflags, cxxflags      []string
	ldflags, buildOptions []string
	configureArgs         []string
	patches               []appliedPatch
	sourceDateEpoch       *int64
	revision              int
	purityConfigureOrMore bool
}

type appliedPatch struct {
	name string // file name in debian/patches: lebowski-NN-<base>
	data []byte
}

func unsafeErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsafeOpinion, fmt.Sprintf(format, a...))
}

// checkOpinion re-checks everything the builder takes from o, reads its
// patches (checking path and sha256) and refuses anything unsafe. It runs
// before any container is created.
func checkOpinion(o *opinions.Opinion, pkg, version, suite string) (*appliedOpinion, error) {
	if o == nil {
		return nil, nil
	}
	if err := vocab.CheckOpinionName(o.Name); err != nil {
		return nil, unsafeErr("%v", err)
	}
	if o.Package != pkg {
		return nil, unsafeErr("opinion %s is for package %q, not %q", o.Name, truncate(o.Package, 80), pkg)
	}
	if o.Debian.Version != "" && o.Debian.Version != version {
		return nil, unsafeErr("opinion %s applies to %s %s, not %s", o.Name, pkg, truncate(o.Debian.Version, 80), version)
	}
	if o.Debian.Suite != "" && o.Debian.Suite != suite {
		return nil, unsafeErr("opinion %s is for suite %s, not %s", o.Name, truncate(o.Debian.Suite, 40), suite)
	}
	bv := vocab.BinaryVersion{Debian: version, Opinion: o.Name, Revision: o.Revision}
	if err := bv.Check(); err != nil {
		return nil, unsafeErr("opinion %s: binary version: %v", o.Name, err)
	}
	a := &appliedOpinion{name: o.Name, cid: o.CID(), revision: o.Revision, sourceDateEpoch: o.SourceDateEpoch, binaryVersion: bv.String()}
	a.summary = oneLineText(o.Summary, 200)
	for _, f := range []struct {
		field string
		in    []string
		out   *[]string
	}{
		{"build.cflags.append", o.Build.CFlags.Append, &a.cflags},
		{"build.cxxflags.append", o.Build.CXXFlags.Append, &a.cxxflags},
		{"build.ldflags.append", o.Build.LDFlags.Append, &a.ldflags},
		{"build.configure_args", o.Build.ConfigureArgs, &a.configureArgs},
	} {
		if len(f.in) > maxFlags {
			return nil, unsafeErr("%s has %d entries (max %d)", f.field, len(f.in), maxFlags)
		}
		for i, v := range f.in {
			if len(v) > maxFlagLen || !reFlag.MatchString(v) || strings.HasPrefix(v, "@") {
				return nil, unsafeErr("%s[%d] %q contains characters the builder does not pass to a build (allowed: A-Z a-z 0-9 _ . , : = + / @ %% -); shell metacharacters, quotes, spaces and '$' are refused", f.field, i, truncate(v, 80))
			}
			*f.out = append(*f.out, v)
		}
	}
	for i, w := range o.Build.BuildOptions {
		if !buildOptionAllowed(w) {
			return nil, unsafeErr("build.build_options[%d] %q is not allow-listed (allowed: %s, hardening=±feature,…, optimize=±feature,…; parallel is fixed by the builder)", i, truncate(w, 80), strings.Join(sortedKeys(opinions.BuildOptions), ", "))
		}
		a.buildOptions = append(a.buildOptions, w)
	}
	if o.SourceDateEpoch != nil && (*o.SourceDateEpoch <= 0 || *o.SourceDateEpoch > 253402300799) {
		return nil, unsafeErr("source_date_epoch %d out of range", *o.SourceDateEpoch)
	}
	if len(o.Patches) > maxPatches {
		return nil, unsafeErr("%d patches (max %d)", len(o.Patches), maxPatches)
	}
	for i, p := range o.Patches {
		data, err := readOpinionPatch(o.Dir, p)
		if err != nil {
			return nil, fmt.Errorf("patches[%d]: %w", i, err)
		}
		base := strings.TrimSuffix(filepath.Base(p.Path), ".patch")
		base = strings.TrimSuffix(base, ".diff")
		a.patches = append(a.patches, appliedPatch{name: fmt.Sprintf("lebowski-%02d-%s.patch", i+1, base), data: data})
	}
	return a, nil
}

// readOpinionPatch reads a patch named relative to dir, refusing paths that
// leave dir (also through symlinks), non-regular files, oversize files and
// a sha256 other than the declared one.
func readOpinionPatch(dir string, p opinions.Patch) ([]byte, error) {
	if dir == "" {
		return nil, unsafeErr("patch %q: opinion has no directory (was it loaded with opinions.Load?)", truncate(p.Path, 80))
	}
	if p.Path == "" || filepath.IsAbs(p.Path) || !filepath.IsLocal(p.Path) || !reFlag.MatchString(p.Path) {
		return nil, unsafeErr("patch path %q must be a plain relative path inside the opinion directory", truncate(p.Path, 80))
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, unsafeErr("opinion directory %s: %v", dir, err)
	}
	full, err := filepath.EvalSymlinks(filepath.Join(root, p.Path))
	if err != nil {
		return nil, unsafeErr("patch %s: %v", p.Path, err)
	}
	if rel, err := filepath.Rel(root, full); err != nil || !filepath.IsLocal(rel) {
		return nil, unsafeErr("patch %s resolves to %s, outside the opinion directory %s", p.Path, full, root)
	}
	st, err := os.Stat(full)
	if err != nil {
		return nil, unsafeErr("patch %s: %v", p.Path, err)
	}
	if !st.Mode().IsRegular() || st.Size() > maxPatchSize {
		return nil, unsafeErr("patch %s is not a regular file of at most %d bytes", p.Path, maxPatchSize)
	}
	data, err := os.ReadFile(full)
	if err != nil {
		return nil, unsafeErr("patch %s: %v", p.Path, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != strings.ToLower(p.SHA256) {
		return nil, unsafeErr("patch %s has sha256 %s, the opinion says %s", p.Path, got, truncate(p.SHA256, 80))
	}
	return data, nil
}

func buildOptionAllowed(w string) bool {
	if _, ok := opinions.BuildOptions[w]; ok {
		return true
	}
	key, val, ok := strings.Cut(w, "=")
	if !ok || !reFeatureList.MatchString(val) {
		return false
	}
	var feats []string
	switch key {
	case "hardening":
		feats = opinions.HardeningFeatures
	case "optimize":
		feats = opinions.OptimizeFeatures
	default:
		return false
	}
	for _, f := range strings.Split(val, ",") {
		if !slices.Contains(feats, f[1:]) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// oneLineText makes untrusted text safe for a changelog line: control
// characters become spaces, whitespace is folded, length is bounded.
func oneLineText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) > n {
		s = string([]rune(s)[:n])
	}
	return s
}

// DatePlaceholder stands for the RFC 2822 date in a changelog entry made
// before the build's SOURCE_DATE_EPOCH is known; the build script replaces
// it.
const DatePlaceholder = "@LEBOWSKI_DATE@"

// ChangelogEntry returns a debian/changelog entry (ending in a newline)
// for pkg at version in suite, urgency medium, by ChangelogMaintainer, with
// the given bullet lines and date (RFC 2822, or DatePlaceholder).
func ChangelogEntry(pkg, version, suite string, lines []string, date string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s) %s; urgency=medium\n\n", pkg, version, suite)
	for _, l := range lines {
		fmt.Fprintf(&b, "  * %s\n", oneLineText(l, 200))
	}
	fmt.Fprintf(&b, "\n -- %s  %s\n", ChangelogMaintainer, date)
	return b.String()
}

func (a *appliedOpinion) changelogLines() []string {
	l := fmt.Sprintf("Rebuilt under the Lebowski opinion %s (revision %d)", a.name, a.revision)
	if a.summary != "" {
		l += ": " + a.summary
	}
	return []string{l, "Opinion CID: " + a.cid}
}

// buildEnv is the container environment of a build.
func buildEnv(a *appliedOpinion) map[string]string {
	env := map[string]string{
		"PATH":              "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG":              "C.UTF-8",
		"LC_ALL":            "C.UTF-8",
		"TZ":                "UTC",
		"HOME":              "/build/home",
		"DEB_BUILD_OPTIONS": "parallel=1",
	}
	if a == nil {
		return env
	}
	if len(a.buildOptions) > 0 {
		env["DEB_BUILD_OPTIONS"] += " " + strings.Join(a.buildOptions, " ")
	}
	if len(a.cflags) > 0 {
		env["DEB_CFLAGS_APPEND"] = strings.Join(a.cflags, " ")
	}
	if len(a.cxxflags) > 0 {
		env["DEB_CXXFLAGS_APPEND"] = strings.Join(a.cxxflags, " ")
	}
	if len(a.ldflags) > 0 {
		env["DEB_LDFLAGS_APPEND"] = strings.Join(a.ldflags, " ")
	}
	if a.sourceDateEpoch != nil {
		env["SOURCE_DATE_EPOCH"] = strconv.FormatInt(*a.sourceDateEpoch, 10)
	}
	return env
}

// scriptParams are the inputs of the build script; every string has been
// validated (names, versions, allow-listed args).
type scriptParams struct {
	dscName  string // file in /build/src
	srcDir   string // /build/<pkg>-<version>
	opinion  *appliedOpinion
	pkg      string
	suite    string
	upstream string
}

// shellQuote single-quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// buildScript renders /build/lebowski/run.sh.
func buildScript(p scriptParams) string {
	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("#!/bin/sh\n# generated by lebowski builder\nset -eu\numask 0022\n")
	w("exec >%s 2>&1\n", containerLog)
	w("stage() { echo \"$1\" >/build/%s; echo \"=== lebowski: $1\"; }\n", stageFile)
	w("refuse() { printf '%%s\\n' \"$1\" >/build/%s; echo \"lebowski: refused: $1\"; exit %d; }\n", refusedFile, exitRefused)
	w("mkdir -p /build/home /build/out\n")
	w("stage extract\n")
	w("dpkg-source -x /build/src/%s %s\n", p.dscName, p.srcDir)
	w("cd %s\n", p.srcDir)
	w("if [ -z \"${SOURCE_DATE_EPOCH:-}\" ]; then SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -STimestamp); fi\nexport SOURCE_DATE_EPOCH\n")
	w("echo \"SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH\"\n")
	w("format=$(cat debian/source/format 2>/dev/null || echo 1.0)\n")
	if a := p.opinion; a != nil {
		if len(a.patches) > 0 {
			w("stage patches\n")
			for _, pt := range a.patches {
				q := shellQuote(pt.name)
				msg := shellQuote("opinion patch " + pt.name + " does not apply to " + p.pkg + " (the opinion needs a new revision for this Debian version)")
				// Check first: dpkg-source --before-build silently skips a
				// series whose next patch does not apply (it assumes it is
				// applied already), which would be a silent partial build.
				w("patch -p1 -N -f -s --dry-run </build/lebowski/patches/%s >/dev/null || refuse %s\n", pt.name, msg)
				w("if [ \"$format\" = \"3.0 (quilt)\" ]; then\n")
				w("  mkdir -p debian/patches && cp /build/lebowski/patches/%s debian/patches/%s && echo %s >>debian/patches/series\n", pt.name, pt.name, q)
				w("  dpkg-source --before-build . || refuse %s\n", msg)
				w("  grep -qxF %s .pc/applied-patches || refuse %s\n", q, msg)
				w("else\n")
				w("  patch -p1 -N -f --no-backup-if-mismatch </build/lebowski/patches/%s\nfi\n", pt.name)
				w("echo \"applied opinion patch %s\"\n", pt.name)
			}
		}
		if len(a.configureArgs) > 0 {
			w("stage configure-args\n")
			w("if grep -Eq '^[[:space:]]*override_dh_auto_configure' debian/rules; then refuse %s; fi\n",
				shellQuote("debian/rules already overrides dh_auto_configure; the builder cannot add configure args safely (use a patch opinion)"))
			w("if ! grep -Eq '(^|[[:space:]])dh[[:space:]]+(\\$@|\\$\\*)' debian/rules; then refuse %s; fi\n",
				shellQuote("debian/rules does not run the dh sequencer (dh $@); configure args are only applied to dh-based packages"))
			w("printf '\\noverride_dh_auto_configure:\\n\\tdh_auto_configure -- %%s\\n' %s >>debian/rules\n", shellQuote(strings.Join(a.configureArgs, " ")))
			w("echo \"configure args: %s\"\n", strings.Join(a.configureArgs, " "))
		}
		w("stage changelog\n")
		w("date=$(date -u -R -d \"@$SOURCE_DATE_EPOCH\")\n")
		w("{ sed \"s/%s/$date/\" /build/lebowski/changelog.entry; echo; cat debian/changelog; } >debian/changelog.lebowski\n", DatePlaceholder)
		w("mv debian/changelog.lebowski debian/changelog\n")
		w("dpkg-parsechangelog -SVersion\n")
	}
	w("stage build\n")
	w("env | sort | grep -E '^(DEB_|SOURCE_DATE_EPOCH|LANG|LC_ALL|TZ)' || true\n")
	w("dpkg-buildpackage -b -uc -us\n")
	w("stage collect\n")
	w("for f in /build/*.deb /build/*.udeb /build/*.buildinfo; do if [ -e \"$f\" ]; then cp \"$f\" /build/out/; fi; done\n")
	w("stage done\n")
	return b.String()
}

// ExtendBuildinfo appends fields (in order) to the first paragraph of an
// unsigned deb822 .buildinfo. A signed or empty buildinfo, or a field
// value with a newline, is an error.
func ExtendBuildinfo(b []byte, fields [][2]string) ([]byte, error) {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN PGP")) {
		return nil, fmt.Errorf("extend buildinfo: it is OpenPGP-signed; extend it before signing")
	}
	body := bytes.TrimRight(b, "\n")
	if len(body) == 0 {
		return nil, fmt.Errorf("extend buildinfo: empty")
	}
	if i := bytes.Index(body, []byte("\n\n")); i >= 0 {
		return nil, fmt.Errorf("extend buildinfo: %d bytes after the first paragraph (want exactly one paragraph)", len(body)-i)
	}
	if !bytes.Contains(body[:bytes.IndexByte(append(body, '\n'), '\n')], []byte(":")) {
		return nil, fmt.Errorf("extend buildinfo: first line is not a field")
	}
	out := append([]byte(nil), body...)
	for _, f := range fields {
		if !reFieldName.MatchString(f[0]) || strings.ContainsAny(f[1], "\r\n") {
			return nil, fmt.Errorf("extend buildinfo: bad field %q", f[0])
		}
		if bytes.Contains(append([]byte{'\n'}, body...), []byte("\n"+f[0]+":")) {
			return nil, fmt.Errorf("extend buildinfo: field %s already present", f[0])
		}
		out = append(out, '\n')
		out = append(out, f[0]+": "+f[1]...)
	}
	return append(out, '\n'), nil
}

var reFieldName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*$`)
