package vocab

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"

	"pault.ag/go/debian/version"
)

func TestClassifyVersion(t *testing.T) {
	op := func(deb, name string, rev int) BinaryVersion { return BinaryVersion{deb, name, rev} }
	tests := []struct {
		desc  string
		in    string
		class VersionClass
		want  BinaryVersion // for VersionOpinion
		why   string        // in the error, for VersionMalformed
	}{
		// Debian's own versions stay Debian.
		{"plain", "1.2-3", VersionDebian, BinaryVersion{}, ""},
		{"epoch and stable update", "1:2.3-4+deb12u1", VersionDebian, BinaryVersion{}, ""},
		{"release candidate", "2.0~rc1-1", VersionDebian, BinaryVersion{}, ""},
		{"backport", "1.0-1~bpo12+1", VersionDebian, BinaryVersion{}, ""},
		{"binNMU of a backport", "1.0-1~bpo12+1+b1", VersionDebian, BinaryVersion{}, ""},
		{"old-stable update with ~", "1.0-1~deb12u1", VersionDebian, BinaryVersion{}, ""},
		{"old-stable update with +", "1.0-1~deb11u2+1", VersionDebian, BinaryVersion{}, ""},
		{"binNMU", "1.0-1+b1", VersionDebian, BinaryVersion{}, ""},
		{"binNMU 2", "2.2.5-3+b1", VersionDebian, BinaryVersion{}, ""},
		{"dfsg", "5.10.0~dfsg-1", VersionDebian, BinaryVersion{}, ""},
		{"git snapshot", "0.9~git20200101+ds-2", VersionDebian, BinaryVersion{}, ""},
		{"really", "1.0+really0.9-1", VersionDebian, BinaryVersion{}, ""},
		{"experimental", "3.0-1~exp1", VersionDebian, BinaryVersion{}, ""},
		{"beta dfsg", "1.0~beta+dfsg-1", VersionDebian, BinaryVersion{}, ""},
		{"ubuntu-style", "1.0-1ubuntu0.22.04.1", VersionDebian, BinaryVersion{}, ""},
		{"ubuntu-style backport", "1.0-1~22.04.1", VersionDebian, BinaryVersion{}, ""},
		// Real bookworm versions with an opinion-shaped upstream part.
		{"bookworm: ~dev0+1 before the revision", "5.0~dev0+1-1", VersionDebian, BinaryVersion{}, ""},
		{"bookworm: same, binNMU", "5.0~dev0+1-1+b1", VersionDebian, BinaryVersion{}, ""},
		{"bookworm: ~rc1+1.1.7", "2.0.6~rc1+1.1.7~rc3-11", VersionDebian, BinaryVersion{}, ""},
		{"bookworm: upper case upstream", "1.2.0~DEVEL+20211015-1", VersionDebian, BinaryVersion{}, ""},
		{"bookworm: ~0+date", "0.18.0.0+~0+20200826-1+deb12u1", VersionDebian, BinaryVersion{}, ""},
		{"bookworm: ~git+hash", "3.0~git+9dc22bd.dfsg.1-1.1", VersionDebian, BinaryVersion{}, ""},
		{"bookworm: ~git<date>+hash", "0~git20070120091816+4229ecc-2", VersionDebian, BinaryVersion{}, ""},
		// Not opinion-shaped: no name, or the name is not letters and digits.
		{"empty name", "2.10-3~+1", VersionDebian, BinaryVersion{}, ""},
		{"dot in the name", "2.10-3~o3.1+1", VersionDebian, BinaryVersion{}, ""},
		{"plus, not tilde", "2.10-3+o3+1", VersionDebian, BinaryVersion{}, ""},
		{"no digit after +", "2.10-3~o3+b1", VersionDebian, BinaryVersion{}, ""},

		// Opinion builds.
		{"opinion build", "2.10-3~o3+1", VersionOpinion, op("2.10-3", "o3", 1), ""},
		{"epoch", "1:2.0-1~fast+12", VersionOpinion, op("1:2.0-1", "fast", 12), ""},
		{"epoch 0 (bookworm has 0:2009.10.04-2)", "0:2009.10.04-2~o3+1", VersionOpinion, op("0:2009.10.04-2", "o3", 1), ""},
		{"tilde in the Debian version", "1.0~rc1-2~o3+1", VersionOpinion, op("1.0~rc1-2", "o3", 1), ""},
		{"on a stable update", "2.36-9+deb12u4~o3+2", VersionOpinion, op("2.36-9+deb12u4", "o3", 2), ""},
		{"on a backport", "1.0-1~bpo12+1~o3+1", VersionOpinion, op("1.0-1~bpo12+1", "o3", 1), ""},
		{"on a binNMU", "1.0-1+b1~o3+1", VersionOpinion, op("1.0-1+b1", "o3", 1), ""},
		{"on an upstream ~x+N", "5.0~dev0+1-1~o3+1", VersionOpinion, op("5.0~dev0+1-1", "o3", 1), ""},
		{"native", "2.10~o3+1", VersionOpinion, op("2.10", "o3", 1), ""},
		{"max revision", "2.10-3~o3+999999", VersionOpinion, op("2.10-3", "o3", MaxRevision), ""},
		{"digit name", "2.10-3~0+1", VersionOpinion, op("2.10-3", "0", 1), ""},
		{"Debian version ending in ~", "2.10-3~~o3+1", VersionOpinion, op("2.10-3~", "o3", 1), ""},
		// A Debian version that reads as an opinion build is one: checked.
		{"collision: native 1.0~alpha+1", "1.0~alpha+1", VersionOpinion, op("1.0", "alpha", 1), ""},

		// Variants of opinion builds: malformed, never Debian.
		{"leading zero revision", "2.10-3~o3+01", VersionMalformed, BinaryVersion{}, "revision 01 has a leading zero"},
		{"revision 0", "2.10-3~o3+0", VersionMalformed, BinaryVersion{}, "revision 0"},
		{"revision too big", "2.10-3~o3+1000000", VersionMalformed, BinaryVersion{}, "above 999999"},
		{"revision huge", "2.10-3~o3+" + strings.Repeat("9", 40), VersionMalformed, BinaryVersion{}, "above 999999"},
		{"tilde after", "2.10-3~o3+1~x", VersionMalformed, BinaryVersion{}, `~o3+1 is followed by "~x"`},
		{"binNMU on top", "2.10-3~o3+1+b1", VersionMalformed, BinaryVersion{}, `followed by "+b1"`},
		{"binNMU on top, epoch", "1:2.10-3~o3+1+b1", VersionMalformed, BinaryVersion{}, `followed by "+b1"`},
		{"revision appended", "2.10-3~o3+1-1", VersionMalformed, BinaryVersion{}, `followed by "-1"`},
		{"dot after", "2.10-3~o3+1.1", VersionMalformed, BinaryVersion{}, `followed by ".1"`},
		{"letter after", "2.10-3~o3+1a", VersionMalformed, BinaryVersion{}, `followed by "a"`},
		{"trailing tilde", "2.10-3~o3+1~", VersionMalformed, BinaryVersion{}, `followed by "~"`},
		{"backport after", "2.10-3~o3+1~bpo12+1", VersionMalformed, BinaryVersion{}, `followed by "~bpo12+1"`},
		{"upper case", "2.10-3~O3+1", VersionMalformed, BinaryVersion{}, "lower-case"},
		{"mixed case", "2.10-3~Fast+1", VersionMalformed, BinaryVersion{}, "lower-case"},
		{"vanilla", "2.10-3~vanilla+1", VersionMalformed, BinaryVersion{}, "reserved"},
		{"name too long", "2.10-3~" + strings.Repeat("a", MaxOpinionNameLen+1) + "+1", VersionMalformed, BinaryVersion{}, "at most 64"},
		{"two opinions", "2.10-3~o3+1~o4+1", VersionMalformed, BinaryVersion{}, `followed by "~o4+1"`},
		{"two opinions, native", "1.0~alpha+1~o3+1", VersionMalformed, BinaryVersion{}, `~alpha+1 is followed by`},
		{"epoch with a leading zero", "01:2.10-3~o3+1", VersionMalformed, BinaryVersion{}, "epoch 01"},
		{"colon after, with an epoch", "1:2.10~o3+1:1", VersionMalformed, BinaryVersion{}, `followed by ":1"`},
		{"bad Debian part", "1-~o3+1", VersionMalformed, BinaryVersion{}, "Debian version before ~o3+1 is not valid"},
		{"not a version", "hello", VersionMalformed, BinaryVersion{}, "upstream version must start with a digit"},
		{"empty", "", VersionMalformed, BinaryVersion{}, "want 1 to"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, class, err := ClassifyVersion(tc.in)
			if class != tc.class || got != tc.want {
				t.Fatalf("ClassifyVersion(%q) = %+v, %s, %v; want %+v, %s", tc.in, got, class, err, tc.want, tc.class)
			}
			if tc.class == VersionMalformed {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.why) {
					t.Fatalf("ClassifyVersion(%q): error %v, want ErrInvalid saying %q", tc.in, err, tc.why)
				}
				return
			}
			if err != nil {
				t.Fatalf("ClassifyVersion(%q): error %v", tc.in, err)
			}
			if class == VersionOpinion && got.String() != tc.in {
				t.Fatalf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

// TestClassifyBookworm holds ClassifyVersion to real Debian: every
// version in bookworm that could be anything but Debian (those with a
// '~') is Debian.
func TestClassifyBookworm(t *testing.T) {
	f, err := os.Open("testdata/bookworm-versions.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		v := sc.Text()
		if v == "" || v[0] == '#' {
			continue
		}
		n++
		if _, class, err := ClassifyVersion(v); class != VersionDebian {
			t.Errorf("bookworm version %q: %s (%v), want debian", v, class, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 2000 {
		t.Fatalf("only %d versions read", n)
	}
}

// FuzzClassifyVersion: never panics; an opinion build round-trips; what
// ParseBinaryVersion accepts is never Debian; a malformed version says
// why; and text added after an opinion build never makes it Debian.
func FuzzClassifyVersion(f *testing.F) {
	for _, s := range []string{"2.10-3~o3+1", "2.10-3~o3+01", "2.10-3~o3+1~x", "2.10-3~o3+1+b1", "1.0-1~bpo12+1",
		"5.0~dev0+1-1", "1:2.0-1~fast+12", "01:2.10-3~o3+1", "2.10-3~O3+1", "1.0~alpha+1", "1-~o3+1", "0:1-1~a+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, class, err := ClassifyVersion(s)
		switch class {
		case VersionOpinion:
			if err != nil || b.String() != s || b.Check() != nil {
				t.Fatalf("ClassifyVersion(%q) = %+v, opinion, %v: does not round-trip", s, b, err)
			}
		case VersionDebian:
			if err != nil || b != (BinaryVersion{}) {
				t.Fatalf("ClassifyVersion(%q) = %+v, debian, %v", s, b, err)
			}
			if _, err := version.Parse(s); err != nil {
				t.Fatalf("ClassifyVersion(%q) = debian, but dpkg's grammar rejects it: %v", s, err)
			}
		case VersionMalformed:
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ClassifyVersion(%q) = malformed with error %v", s, err)
			}
		default:
			t.Fatalf("ClassifyVersion(%q): class %d", s, class)
		}
		if _, ok := ParseBinaryVersion(s); ok && class == VersionDebian {
			t.Fatalf("ParseBinaryVersion accepts %q but ClassifyVersion calls it debian", s)
		}
		if class != VersionOpinion {
			return
		}
		tails := []string{"+b1", "~x", "~", ".1", "a", "~bpo12+1", "~o4+1", ":1"}
		if strings.IndexByte(StripEpoch(s), '-') >= 0 { // see the doc: upstream parts before the first '-'
			tails = append(tails, "-1")
		}
		for _, tail := range tails {
			if _, c, _ := ClassifyVersion(s + tail); c == VersionDebian {
				t.Fatalf("opinion build %q with %q after is classed debian", s, tail)
			}
		}
	})
}
