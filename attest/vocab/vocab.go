// Package vocab owns Lebowski's domain words and their rules: Debian
// package, suite, architecture and version, opinion names, the binary
// version an opinion build gets (<debian version>~<opinion>+<revision>),
// opinion references ("hello/o3"), builder fingerprints, artifact file
// names and purities. Every layer (opinions, attest, builder, p2p, the
// config, the CLI) checks these words here and nowhere else, the way
// go-libp2p's core/peer owns peer.ID.
//
// The checks are hand-written byte loops, not regular expressions: claims
// are validated on the gossip hot path.
package vocab

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every error of this package: the word is
// malformed.
var ErrInvalid = errors.New("invalid")

// Limits.
const (
	MaxPackageLen     = 100 // source and binary package names
	MaxSuiteLen       = 64
	MaxArchLen        = 32
	MaxVersionLen     = 128
	MaxOpinionNameLen = 64
	MaxFileNameLen    = 255
	MaxRevision       = 999999
)

// Vanilla is the opinion name of an unmodified Debian build, in topics
// and references ("hello/vanilla"). No opinion file may use it.
const Vanilla = "vanilla"

func bad(what, s, why string) error {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Errorf("%w %s %q: %s", ErrInvalid, what, s, why)
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlnum(c byte) bool { return isLower(c) || isDigit(c) }

// CheckPackage checks a Debian source or binary package name (Debian
// policy §5.6.1, §5.6.7): lower-case letters, digits, '+', '-' and '.',
// starting with a letter or digit, 2 to MaxPackageLen characters.
func CheckPackage(s string) error {
	switch {
	case len(s) < 2:
		return bad("package name", s, "Debian package names have at least 2 characters")
	case len(s) > MaxPackageLen:
		return bad("package name", s, fmt.Sprintf("longer than %d characters", MaxPackageLen))
	case !isAlnum(s[0]):
		return bad("package name", s, "must start with a lower-case letter or digit")
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '+' && c != '-' && c != '.' {
			return bad("package name", s, fmt.Sprintf("character %q is not allowed (lower-case letters, digits, + - .)", c))
		}
	}
	return nil
}

// IsPackage reports whether CheckPackage accepts s.
func IsPackage(s string) bool { return CheckPackage(s) == nil }

// CheckSuite checks a Debian suite or codename: lower-case letters,
// digits and '-', starting with a letter, 2 to MaxSuiteLen characters
// ("bookworm", "bookworm-updates", "bookworm-proposed-updates").
func CheckSuite(s string) error {
	switch {
	case len(s) < 2 || len(s) > MaxSuiteLen:
		return bad("suite", s, fmt.Sprintf("want 2 to %d characters", MaxSuiteLen))
	case !isLower(s[0]):
		return bad("suite", s, "must start with a lower-case letter")
	case s[len(s)-1] == '-':
		return bad("suite", s, "must not end with '-'")
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' {
			return bad("suite", s, fmt.Sprintf("character %q is not allowed (lower-case letters, digits, -)", c))
		}
	}
	return nil
}

// CheckArch checks a Debian architecture name ("amd64", "arm64",
// "hurd-i386", "all"): lower-case letters, digits and '-', starting with a
// letter or digit, 1 to MaxArchLen characters.
func CheckArch(s string) error {
	switch {
	case s == "" || len(s) > MaxArchLen:
		return bad("architecture", s, fmt.Sprintf("want 1 to %d characters", MaxArchLen))
	case !isAlnum(s[0]):
		return bad("architecture", s, "must start with a lower-case letter or digit")
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' {
			return bad("architecture", s, fmt.Sprintf("character %q is not allowed", c))
		}
	}
	return nil
}

// CheckVersion checks a Debian version (policy §5.6.12):
// [epoch:]upstream_version[-debian_revision]. The epoch is digits; the
// upstream version starts with a digit and holds letters, digits and
// . + ~ (plus '-' only when there is a revision, ':' only when there is an
// epoch); the revision, after the last '-', is non-empty letters, digits
// and + . ~. At most MaxVersionLen characters.
func CheckVersion(s string) error {
	if s == "" || len(s) > MaxVersionLen {
		return bad("version", s, fmt.Sprintf("want 1 to %d characters", MaxVersionLen))
	}
	rest := s
	if i := strings.IndexByte(s, ':'); i >= 0 {
		epoch := s[:i]
		if epoch == "" {
			return bad("version", s, "empty epoch before ':'")
		}
		for j := 0; j < len(epoch); j++ {
			if !isDigit(epoch[j]) {
				return bad("version", s, "the epoch before ':' must be digits")
			}
		}
		if len(epoch) > 9 {
			return bad("version", s, "epoch too large")
		}
		rest = s[i+1:]
	}
	upstream, revision := rest, ""
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		upstream, revision = rest[:i], rest[i+1:]
		if revision == "" {
			return bad("version", s, "empty Debian revision after the last '-'")
		}
	}
	if upstream == "" || !isDigit(upstream[0]) {
		return bad("version", s, "the upstream version must start with a digit")
	}
	for i := 0; i < len(upstream); i++ {
		c := upstream[i]
		switch {
		case isAlnum(c), 'A' <= c && c <= 'Z', c == '.', c == '+', c == '~':
		case c == '-' && revision != "":
		case c == ':' && rest != s:
		default:
			return bad("version", s, fmt.Sprintf("character %q is not allowed in the upstream version", c))
		}
	}
	for i := 0; i < len(revision); i++ {
		if c := revision[i]; !isAlnum(c) && !('A' <= c && c <= 'Z') && c != '.' && c != '+' && c != '~' {
			return bad("version", s, fmt.Sprintf("character %q is not allowed in the Debian revision", c))
		}
	}
	return nil
}

// IsVersion reports whether CheckVersion accepts s.
func IsVersion(s string) bool { return CheckVersion(s) == nil }

// StripEpoch returns the version without its epoch, as Debian file names
// carry it ("1:2.0-1" → "2.0-1").
func StripEpoch(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		return v[i+1:]
	}
	return v
}

// CheckOpinionName checks an opinion name: 1 to MaxOpinionNameLen
// lower-case letters and digits. No '-': the name becomes part of the
// binary version <debian version>~<name>+<revision>, and Debian splits the
// upstream version from the Debian revision at the last '-', so a '-' in
// the name would change which part of the version is the revision
// (docs/OPINIONS.md). "vanilla" names unmodified builds, and names that
// read like Debian's own version suffixes (bpo12, deb12u1, deb12) would
// make a backport or stable update look like an opinion build; all are
// reserved.
func CheckOpinionName(s string) error {
	if s == "" || len(s) > MaxOpinionNameLen {
		return bad("opinion name", s, fmt.Sprintf("want 1 to %d lower-case letters and digits", MaxOpinionNameLen))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) {
			why := fmt.Sprintf("character %q is not allowed (lower-case letters and digits only)", c)
			if c == '-' {
				why = "'-' is not allowed: the name becomes part of the Debian version, where the last '-' starts the Debian revision"
			}
			return bad("opinion name", s, why)
		}
	}
	if s == Vanilla {
		return bad("opinion name", s, "reserved for unmodified Debian builds")
	}
	if debianSuffix(s) {
		return bad("opinion name", s, "reserved: reads like a Debian version suffix (bpoN, debN, debNuM)")
	}
	return nil
}

// debianSuffix reports names Debian uses after '~' or '+' in its own
// versions: bpo<N> (backports), deb<N> and deb<N>u<M> (stable updates).
func debianSuffix(s string) bool {
	digitsFrom := func(t string) (string, bool) {
		i := 0
		for i < len(t) && isDigit(t[i]) {
			i++
		}
		return t[i:], i > 0
	}
	if rest, ok := strings.CutPrefix(s, "bpo"); ok {
		r, ok := digitsFrom(rest)
		return ok && r == ""
	}
	if rest, ok := strings.CutPrefix(s, "deb"); ok {
		r, ok := digitsFrom(rest)
		if !ok {
			return false
		}
		if r == "" {
			return true
		}
		if r2, ok := strings.CutPrefix(r, "u"); ok {
			r3, ok := digitsFrom(r2)
			return ok && r3 == ""
		}
	}
	return false
}

// BinaryVersion is the version of the packages built under an opinion:
// <Debian>~<Opinion>+<Revision>. The '~' makes it sort just below
// Debian's own build of the same source, so an opinion build never shadows
// a Debian security update.
type BinaryVersion struct {
	Debian   string // Debian source version, e.g. 2.10-3
	Opinion  string // opinion name, e.g. o3
	Revision int    // opinion revision, ≥ 1
}

// String formats the binary version: "2.10-3~o3+1".
func (b BinaryVersion) String() string {
	return b.Debian + "~" + b.Opinion + "+" + strconv.Itoa(b.Revision)
}

// Check validates every part and the formatted result.
func (b BinaryVersion) Check() error {
	if err := CheckVersion(b.Debian); err != nil {
		return err
	}
	if err := CheckOpinionName(b.Opinion); err != nil {
		return err
	}
	if b.Revision < 1 || b.Revision > MaxRevision {
		return bad("opinion revision", strconv.Itoa(b.Revision), fmt.Sprintf("want 1 to %d", MaxRevision))
	}
	return CheckVersion(b.String())
}

// ParseBinaryVersion splits a package version into the Debian version,
// opinion name and revision. ok is false for a version that is not an
// opinion build (a plain Debian version, or a Debian suffix such as
// ~bpo12+1 or ~deb12u1). The parse is the inverse of String for every
// BinaryVersion whose Check passes. A false ok does not make a version
// Debian's: ClassifyVersion decides that, for the apt gate.
func ParseBinaryVersion(v string) (b BinaryVersion, ok bool) {
	plus := strings.LastIndexByte(v, '+')
	if plus < 0 {
		return b, false
	}
	rev := v[plus+1:]
	if rev == "" || len(rev) > 6 || rev[0] == '0' {
		return b, false
	}
	for i := 0; i < len(rev); i++ {
		if !isDigit(rev[i]) {
			return b, false
		}
	}
	tilde := strings.LastIndexByte(v[:plus], '~')
	if tilde < 0 {
		return b, false
	}
	b.Debian, b.Opinion = v[:tilde], v[tilde+1:plus]
	b.Revision, _ = strconv.Atoi(rev)
	if b.Check() != nil {
		return BinaryVersion{}, false
	}
	return b, true
}

// Ref names an opinion of a source package: "hello/o3". An empty Opinion
// (written "hello/vanilla" or just "hello") is the vanilla Debian build.
type Ref struct {
	Package string
	Opinion string
}

// String is "package/opinion", with "vanilla" for the vanilla build.
func (r Ref) String() string {
	if r.Opinion == "" {
		return r.Package + "/" + Vanilla
	}
	return r.Package + "/" + r.Opinion
}

// ParseRef parses "package/opinion", "package/vanilla" or "package".
func ParseRef(s string) (Ref, error) {
	pkg, name, _ := strings.Cut(s, "/")
	if err := CheckPackage(pkg); err != nil {
		return Ref{}, fmt.Errorf("%w %q: want <package>/<opinion>, e.g. hello/o3: %v", ErrInvalid, s, err)
	}
	if name == "" || name == Vanilla {
		if strings.HasSuffix(s, "/") {
			return Ref{}, bad("opinion reference", s, "empty opinion name after '/'")
		}
		return Ref{Package: pkg}, nil
	}
	if err := CheckOpinionName(name); err != nil {
		return Ref{}, fmt.Errorf("%w %q: want <package>/<opinion>, e.g. hello/o3: %v", ErrInvalid, s, err)
	}
	return Ref{Package: pkg, Opinion: name}, nil
}

// CheckFingerprint checks an OpenPGP fingerprint as Lebowski writes it:
// 40 (v4) or 64 (v6) upper-case hex digits.
func CheckFingerprint(s string) error {
	if len(s) != 40 && len(s) != 64 {
		return bad("fingerprint", s, "want 40 or 64 upper-case hex digits")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && !('A' <= c && c <= 'F') {
			return bad("fingerprint", s, "want 40 or 64 upper-case hex digits")
		}
	}
	return nil
}

// NormalizeFingerprint upper-cases a fingerprint and drops the spaces gpg
// prints between groups.
func NormalizeFingerprint(s string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

// CheckFileName checks a plain file name as artifacts and Debian pool
// files have: letters, digits and _ . + ~ -, starting with a letter or
// digit, at most MaxFileNameLen bytes. No '/', no "..".
func CheckFileName(s string) error {
	if s == "" || len(s) > MaxFileNameLen {
		return bad("file name", s, fmt.Sprintf("want 1 to %d characters", MaxFileNameLen))
	}
	if c := s[0]; !isAlnum(c) && !('A' <= c && c <= 'Z') {
		return bad("file name", s, "must start with a letter or digit")
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && !('A' <= c && c <= 'Z') && strings.IndexByte("_.+~-", c) < 0 {
			return bad("file name", s, fmt.Sprintf("character %q is not allowed", c))
		}
	}
	return nil
}

// IsSHA256Hex reports whether s is 64 lower-case hex digits.
func IsSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Purity of an opinion, from most to least trustworthy.
type Purity string

const (
	PurityPureCompilation Purity = "pure-compilation" // compiler and linker flags only
	PurityConfigureOnly   Purity = "configure-only"   // plus configure arguments
	PurityPatches         Purity = "patches"          // plus source patches
)

// Valid reports whether p is one of the known purities.
func (p Purity) Valid() bool {
	switch p {
	case PurityPureCompilation, PurityConfigureOnly, PurityPatches:
		return true
	}
	return false
}

// Rank orders purities from most (0) to least pure; unknown is last (3).
func (p Purity) Rank() int {
	switch p {
	case PurityPureCompilation:
		return 0
	case PurityConfigureOnly:
		return 1
	case PurityPatches:
		return 2
	}
	return 3
}

// Words says what the purity means for a user.
func (p Purity) Words() string {
	switch p {
	case PurityPureCompilation:
		return "no source modifications (compiler flags only)"
	case PurityConfigureOnly:
		return "configure options only, no source modifications"
	case PurityPatches:
		return "source patches"
	}
	return "undeclared"
}

// VersionClass is what a package version is to Lebowski: see
// ClassifyVersion. The zero value is VersionMalformed, so a class that
// was never set fails closed.
type VersionClass int

// Version classes.
const (
	// VersionMalformed has the shape of an opinion build but is not one
	// exactly (or is not a Debian version at all): nothing Lebowski
	// builds carries it, so the apt gate refuses it.
	VersionMalformed VersionClass = iota
	// VersionDebian is a Debian version with no opinion-shaped part.
	VersionDebian
	// VersionOpinion is exactly <Debian>~<opinion>+<revision>.
	VersionOpinion
)

func (c VersionClass) String() string {
	switch c {
	case VersionDebian:
		return "debian"
	case VersionOpinion:
		return "opinion"
	}
	return "malformed"
}

// opinionPart is one "~<name>+<digits>" in a version.
type opinionPart struct {
	at     int    // index of the '~' in the version
	name   string // letters and digits, either case
	digits string
	end    int // index just past the digits
}

func (p opinionPart) String() string { return "~" + p.name + "+" + p.digits }

// opinionPartAt reads "~<name>+<digits>" at v[i] == '~': name is the
// longest run of ASCII letters (either case) and digits after the '~',
// followed by '+' and at least one digit. Debian's own suffixes
// (bpoN, debN, debNuM: see CheckOpinionName) are not opinion parts.
func opinionPartAt(v string, i int) (opinionPart, bool) {
	j := i + 1
	for j < len(v) && (isAlnum(v[j]) || 'A' <= v[j] && v[j] <= 'Z') {
		j++
	}
	if j == i+1 || j+1 >= len(v) || v[j] != '+' || !isDigit(v[j+1]) {
		return opinionPart{}, false
	}
	k := j + 1
	for k < len(v) && isDigit(v[k]) {
		k++
	}
	p := opinionPart{at: i, name: v[i+1 : j], digits: v[j+1 : k], end: k}
	if debianSuffix(p.name) {
		return opinionPart{}, false
	}
	return p, true
}

// problem says why an opinion part is not the exact end of an opinion
// build, "" when it is.
func (p opinionPart) problem(v string) string {
	if err := CheckOpinionName(p.name); err != nil {
		why := "not a valid opinion name"
		upper := false
		for i := 0; i < len(p.name); i++ {
			upper = upper || 'A' <= p.name[i] && p.name[i] <= 'Z'
		}
		switch {
		case upper:
			why = "opinion names are lower-case"
		case p.name == Vanilla:
			why = "\"vanilla\" is reserved for unmodified Debian builds"
		case len(p.name) > MaxOpinionNameLen:
			why = fmt.Sprintf("opinion names have at most %d characters", MaxOpinionNameLen)
		}
		return fmt.Sprintf("%s: %s", p, why)
	}
	switch {
	case p.digits[0] == '0' && len(p.digits) > 1:
		return fmt.Sprintf("%s: revision %s has a leading zero", p, p.digits)
	case p.digits == "0":
		return fmt.Sprintf("%s: revision 0 (revisions start at 1)", p)
	case len(p.digits) > 9 || mustAtoi(p.digits) > MaxRevision:
		return fmt.Sprintf("%s: revision %s is above %d", p, p.digits, MaxRevision)
	case p.end < len(v):
		return fmt.Sprintf("%s is followed by %q (an opinion build ends with ~<opinion>+<revision>)", p, v[p.end:])
	}
	return ""
}

// mustAtoi reads at most 9 decimal digits.
func mustAtoi(digits string) int {
	n, _ := strconv.Atoi(digits)
	return n
}

// ClassifyVersion tells a Lebowski opinion build from a Debian version,
// strictly, for the apt gate: a version that only looks like an opinion
// build must not pass as Debian's own.
//
// An opinion part is "~<name>+<digits>" where <name> is the longest run
// of letters (either case) and digits after the '~' and is not one of
// Debian's own suffixes (bpoN, debN, debNuM: 1.0-1~bpo12+1 is Debian's).
// Opinion parts before the first '-' of a version that has one (after
// the epoch) are upstream version text, as in 5.0~dev0+1-1 or
// 2.0.6~rc1+1.1.7~rc3-11, and are ignored: an opinion build puts its
// part after the whole Debian version, so after every '-'. The class is:
//
//   - VersionMalformed when v is not a Debian version (CheckVersion), or
//     has an opinion part and is not exactly an opinion build: the part
//     is followed by more text (2.10-3~o3+1~x, 2.10-3~o3+1+b1,
//     2.10-3~o3+1-1), the revision has a leading zero, is 0 or above
//     MaxRevision (2.10-3~o3+01), the name is upper-case, "vanilla" or
//     too long (2.10-3~O3+1), there are two opinion parts
//     (2.10-3~o3+1~o4+1), the Debian version before it is not valid
//     (1-~o3+1), or the epoch has a leading zero (01:2.0-1~o3+1);
//   - VersionOpinion when v is exactly <Debian>~<opinion>+<revision>
//     (ParseBinaryVersion accepts it) and that is its only opinion part;
//     the BinaryVersion is returned;
//   - VersionDebian otherwise: no opinion part at all.
//
// A Debian version that happens to read as an opinion build
// (1.0~alpha+1) is an opinion build here: the gate then asks the node,
// which refuses it unless trusted builders attest it — a refusal that
// says why, never a silent pass. Of the 22961 distinct versions in
// Debian 12 (bookworm main, -updates, -security, amd64; those with a '~'
// are in testdata/bookworm-versions.txt) every one is VersionDebian; 9
// hold an opinion-shaped part, all before their first '-'. The price of
// that exemption: an opinion build of a native version (no '-') with a
// Debian revision appended, 2.10~o3+1-1, reads like bookworm's
// 5.0~dev0+1-1 and is VersionDebian. A revisioned one, 2.10-3~o3+1-1, is
// VersionMalformed.
//
// The error, for VersionMalformed only, wraps ErrInvalid and says why.
func ClassifyVersion(v string) (BinaryVersion, VersionClass, error) {
	if err := CheckVersion(v); err != nil {
		return BinaryVersion{}, VersionMalformed, err
	}
	body, epoch := v, ""
	if i := strings.IndexByte(v, ':'); i >= 0 {
		epoch, body = v[:i], v[i+1:]
	}
	hyphen := strings.IndexByte(body, '-')
	var parts []opinionPart
	for i := 0; i < len(body); i++ {
		if body[i] != '~' || i < hyphen {
			continue
		}
		if p, ok := opinionPartAt(body, i); ok {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return BinaryVersion{}, VersionDebian, nil
	}
	malformed := func(why string) (BinaryVersion, VersionClass, error) {
		return BinaryVersion{}, VersionMalformed, bad("version", v, "has the form of a Lebowski opinion build but is not one: "+why)
	}
	for _, p := range parts {
		if why := p.problem(body); why != "" {
			return malformed(why)
		}
	}
	if len(parts) > 1 {
		return malformed(fmt.Sprintf("two opinion parts, %s and %s (an opinion build has one, at the end)", parts[0], parts[1]))
	}
	if len(epoch) > 1 && epoch[0] == '0' {
		return malformed(fmt.Sprintf("epoch %s has a leading zero", epoch))
	}
	b, ok := ParseBinaryVersion(v)
	if !ok {
		why := "it does not parse as <Debian version>~<opinion>+<revision>"
		if err := CheckVersion(v[:len(v)-len(body)+parts[0].at]); err != nil {
			why = fmt.Sprintf("the Debian version before %s is not valid (%v)", parts[0], err)
		}
		return malformed(why)
	}
	return b, VersionOpinion, nil
}
