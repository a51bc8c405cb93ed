package aptgate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder/debfile/debfiletest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/store"
)

const v3Input = `VERSION 3
APT::Architecture=amd64
APT::Get::Assume-Yes=true
Dir::Cache::Archives=/var/cache/apt/archives/

hello - - none < 2.10-3~o3+1 amd64 none /var/cache/apt/archives/hello_2.10-3~o3+1_amd64.deb
libc6 2.36-9 amd64 same = 2.36-9 amd64 same **CONFIGURE**
old 1.0 amd64 none > - - none **REMOVE**
tree 2.1.0-1 amd64 none < 2.1.0-2 amd64 none /srv/my repo/tree_2.1.0-2_amd64.deb
`

func TestParseHook(t *testing.T) {
	for _, tc := range []struct {
		desc, in string
		want     []Action
		err      string
	}{
		{"version 3", v3Input, []Action{
			{Package: "hello", OldVersion: "-", NewVersion: "2.10-3~o3+1", Arch: "amd64", Path: "/var/cache/apt/archives/hello_2.10-3~o3+1_amd64.deb"},
			{Package: "tree", OldVersion: "2.1.0-1", NewVersion: "2.1.0-2", Arch: "amd64", Path: "/srv/my repo/tree_2.1.0-2_amd64.deb"},
		}, ""},
		{"version 2", "VERSION 2\nA=b\n\nhello - < 2.10-3 /x/hello.deb\nx 1 = 1 **CONFIGURE**\n", []Action{{Package: "hello", OldVersion: "-", NewVersion: "2.10-3", Path: "/x/hello.deb"}}, ""},
		{"version 1", "/x/a.deb\n\n/x/b.deb\n", []Action{{Path: "/x/a.deb"}, {Path: "/x/b.deb"}}, ""},
		{"empty", "", nil, ""},
		{"config only", "VERSION 3\nA=b\n", nil, ""},
		{"unknown version", "VERSION 9\n", nil, "VERSION 2 or 3"},
		{"short action", "VERSION 3\n\nhello - - none < 1\n", nil, "fields"},
		{"bad direction", "VERSION 2\n\nhello - ? 1 /x.deb\n", nil, "direction"},
		{"not a deb", "VERSION 2\n\nhello - < 1 /etc/passwd\n", nil, "neither"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ParseHook(strings.NewReader(tc.in))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseHook(f *testing.F) {
	f.Add(v3Input)
	f.Add("VERSION 2\nA=b\n\nhello - < 2.10-3 /x/hello.deb\n")
	f.Add("/x/a.deb\n")
	f.Fuzz(func(t *testing.T, in string) {
		acts, err := ParseHook(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, a := range acts {
			if a.Path == "" {
				t.Fatalf("action without a path: %+v", a)
			}
		}
	})
}

// node is a real core node over a temp store with three trusted builders
// that attest the given files of hello/o3.
func node(t *testing.T, files ...string) core.API {
	t.Helper()
	cfg := &config.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	st, err := store.Open(filepath.Join(cfg.DataDir, "store.db"))
	require.NoError(t, err)
	n := core.New(st, core.WithConfig(cfg))
	t.Cleanup(func() { n.Close(); st.Close() })
	var arts []attest.Artifact
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		arts = append(arts, attest.Artifact{Name: filepath.Base(f), SHA256: attesttest.Hex(string(b))})
	}
	for _, id := range attesttest.Fresh(t, 3) {
		c := attesttest.Claim(t, id, func(s *attest.Statement) { s.Artifacts = arts })
		res, err := n.ImportClaims(context.Background(), [][]byte{attesttest.Wire(t, c)})
		require.NoError(t, err)
		require.Equal(t, "new", res[0].Status, res[0].Error)
		require.NoError(t, n.SetTrust(context.Background(), id.Fingerprint(), attest.TrustTrusted, ""))
	}
	return n
}

func TestGate(t *testing.T) {
	dir := t.TempDir()
	safe := debfiletest.Build(t, dir, debfiletest.Package{Name: "hello", Version: attesttest.BinaryVersion})
	good, err := os.ReadFile(safe)
	require.NoError(t, err)
	api := node(t, safe)

	// A tampered copy: same name and version, other bytes.
	tampered := filepath.Join(t.TempDir(), filepath.Base(safe))
	other, err := os.ReadFile(debfiletest.Build(t, t.TempDir(), debfiletest.Package{Name: "hello", Version: attesttest.BinaryVersion, Source: "hello"}))
	require.NoError(t, err)
	require.NotEqual(t, good, other)
	require.NoError(t, os.WriteFile(tampered, other, 0o644))
	unverified := debfiletest.Build(t, dir, debfiletest.Package{Name: "nano", Version: "7.2-1~o3+1"})
	plain := debfiletest.Build(t, dir, debfiletest.Package{Name: "tree", Version: "2.1.0-1"})
	damaged := filepath.Join(dir, "damaged.deb")
	require.NoError(t, os.WriteFile(damaged, good[:len(good)/2], 0o644))
	foreign := debfiletest.Build(t, t.TempDir(), debfiletest.Package{Name: "hello", Version: attesttest.BinaryVersion, Arch: "arm64"})

	for _, tc := range []struct {
		desc    string
		policy  config.AptPolicy
		api     core.API
		path    string
		allowed bool
		verdict core.Verdict
		line    string
	}{
		{"safe Lebowski build", config.AptPolicy{}, api, safe, true, core.Safe, "ok hello"},
		{"tampered copy", config.AptPolicy{}, api, tampered, false, core.DoNotInstall, "REFUSED hello " + attesttest.BinaryVersion + ": DO NOT INSTALL — sha256 differs from the consensus"},
		{"nobody attests it", config.AptPolicy{}, api, unverified, false, core.Unverified, "REFUSED nano 7.2-1~o3+1: UNVERIFIED — not found: no claims for nano"},
		{"plain Debian package", config.AptPolicy{}, api, plain, true, "", "not a Lebowski build"},
		{"required Debian package", config.AptPolicy{Require: []string{"tree"}}, api, plain, false, core.Unverified, "REFUSED tree 2.1.0-1: UNVERIFIED"},
		{"damaged file", config.AptPolicy{}, api, damaged, false, core.DoNotInstall, "not an intact .deb"},
		{"foreign architecture", config.AptPolicy{}, api, foreign, false, core.DoNotInstall, "built for arm64"},
		{"allow overrides", config.AptPolicy{Allow: []string{"nano"}}, api, unverified, true, core.Unverified, "installed anyway: listed in apt.allow"},
		{"warn installs", config.AptPolicy{Lebowski: config.AptWarn}, api, unverified, true, core.Unverified, "installed anyway: apt.lebowski is warn"},
		{"off does not ask", config.AptPolicy{Lebowski: config.AptOff}, nil, unverified, true, "", "not checked"},
		{"node down: fail closed", config.AptPolicy{}, nil, safe, false, core.Unverified, "cannot ask the Lebowski node (store is locked)"},
		{"node down: Debian passes", config.AptPolicy{}, nil, plain, true, "", "not a Lebowski build"},
		{"missing file", config.AptPolicy{}, api, filepath.Join(dir, "gone.deb"), false, core.DoNotInstall, "cannot read the file"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.policy.Lebowski == "" {
				tc.policy.Lebowski = config.AptRefuse
			}
			g := &Gate{Policy: tc.policy, API: tc.api}
			if tc.api == nil {
				g.NodeErr = errors.New("store is locked")
			}
			d := g.Check(context.Background(), Action{Path: tc.path})
			assert.Equal(t, tc.allowed, d.Allowed, d.Line())
			assert.Equal(t, tc.verdict, d.Verdict, d.Line())
			assert.Contains(t, d.Line(), tc.line)
			if !d.Allowed {
				assert.NotEmpty(t, d.Next, "a refusal says what to run next")
				assert.NotContains(t, d.Line(), "\n", "one line per package")
			}
		})
	}
}

// TestGateVersionsAndNames: a version that only looks like a Lebowski
// build is refused, not passed as Debian's; apt.allow and apt.require
// follow the binary package apt installs, not the Source field the file
// declares; a file that is not what apt asked for is refused.
func TestGateVersionsAndNames(t *testing.T) {
	dir := t.TempDir()
	deb := func(name, version, source string) string {
		return debfiletest.Build(t, dir, debfiletest.Package{Name: name, Version: version, Source: source})
	}
	api := node(t, deb("hello", attesttest.BinaryVersion, "")) // claims for hello 2.10-3~o3+1 only
	apt := func(name, version, path string) Action {
		return Action{Package: name, OldVersion: "-", NewVersion: version, Arch: "amd64", Path: path}
	}
	leadingZero := deb("hello", "2.10-3~o3+01", "")
	tildeAfter := deb("hello", "2.10-3~o3+1~x", "")
	binNMU := deb("hello", "2.10-3~o3+1+b1", "")
	upper := deb("hello", "2.10-3~O3+1", "")
	collision := deb("alpha", "1.0~alpha+1", "")
	debian := deb("libc6", "2.36-9+deb12u4", "glibc")
	bookworm := deb("dev0", "5.0~dev0+1-1", "")              // a real bookworm version shape
	liar := deb("evil", "7.2-1~o3+1", "nano")                // claims Source: nano
	plainLiar := deb("evil", "1.0-1", "evil")                // apt thinks it is libssl3
	plainHello := deb("hello", attesttest.DebianVersion, "") // apt thinks it is the o3 build
	nano := deb("nano", "7.2-1~o3+1", "")                    // nobody attests it

	for _, tc := range []struct {
		desc    string
		policy  config.AptPolicy
		act     Action
		allowed bool
		verdict core.Verdict
		kind    string
		line    string
	}{
		{"leading zero revision", config.AptPolicy{}, apt("hello", "2.10-3~o3+01", leadingZero), false, core.DoNotInstall, KindMalformed,
			`REFUSED hello 2.10-3~o3+01: DO NOT INSTALL — invalid version "2.10-3~o3+01": has the form of a Lebowski opinion build but is not one: ~o3+01: revision 01 has a leading zero`},
		{"text after the revision", config.AptPolicy{}, apt("hello", "2.10-3~o3+1~x", tildeAfter), false, core.DoNotInstall, KindMalformed,
			`~o3+1 is followed by "~x"`},
		{"binNMU on an opinion build", config.AptPolicy{}, apt("hello", "2.10-3~o3+1+b1", binNMU), false, core.DoNotInstall, KindMalformed,
			`~o3+1 is followed by "+b1"`},
		{"malformed, hook protocol 1", config.AptPolicy{}, Action{Path: binNMU}, false, core.DoNotInstall, KindMalformed,
			`REFUSED hello 2.10-3~o3+1+b1: DO NOT INSTALL`},
		{"upper-case opinion", config.AptPolicy{}, apt("hello", "2.10-3~O3+1", upper), false, core.DoNotInstall, KindMalformed,
			"opinion names are lower-case"},
		{"malformed, node down", config.AptPolicy{}, apt("hello", "2.10-3~o3+1+b1", binNMU), false, core.DoNotInstall, KindMalformed,
			`followed by "+b1"`},
		{"malformed under warn", config.AptPolicy{Lebowski: config.AptWarn}, apt("hello", "2.10-3~o3+1+b1", binNMU), true, core.DoNotInstall, KindMalformed,
			"installed anyway: apt.lebowski is warn"},
		{"malformed under off", config.AptPolicy{Lebowski: config.AptOff}, apt("hello", "2.10-3~o3+1+b1", binNMU), true, "", KindMalformed,
			"not checked"},
		{"malformed but allowed", config.AptPolicy{Allow: []string{"hello"}}, apt("hello", "2.10-3~o3+1+b1", binNMU), true, core.DoNotInstall, KindMalformed,
			"installed anyway: listed in apt.allow"},
		{"Debian version shaped like an opinion build", config.AptPolicy{}, apt("alpha", "1.0~alpha+1", collision), false, core.Unverified, KindLebowski,
			"version 1.0~alpha+1 has the form of a Lebowski opinion build (opinion alpha, revision 1) and no trusted builder attests it"},
		{"real Debian version", config.AptPolicy{}, apt("libc6", "2.36-9+deb12u4", debian), true, "", KindOther,
			"ok libc6 2.36-9+deb12u4: not a Lebowski build"},
		{"real Debian version with ~x+N upstream", config.AptPolicy{}, apt("dev0", "5.0~dev0+1-1", bookworm), true, "", KindOther,
			"not a Lebowski build"},
		{"allow follows apt's name, not Source", config.AptPolicy{Allow: []string{"nano"}}, apt("evil", "7.2-1~o3+1", liar), false, core.Unverified, KindLebowski,
			"REFUSED evil 7.2-1~o3+1: UNVERIFIED"},
		{"allow by apt's name", config.AptPolicy{Allow: []string{"nano"}}, apt("nano", "7.2-1~o3+1", nano), true, core.Unverified, KindLebowski,
			"installed anyway: listed in apt.allow"},
		{"require by binary name", config.AptPolicy{Require: []string{"libc6"}}, apt("libc6", "2.36-9+deb12u4", debian), false, core.Unverified, KindRequired,
			"REFUSED libc6 2.36-9+deb12u4: UNVERIFIED"},
		{"require does not follow Source", config.AptPolicy{Require: []string{"glibc"}}, apt("libc6", "2.36-9+deb12u4", debian), true, "", KindOther,
			"not a Lebowski build"},
		{"require: the file is another package", config.AptPolicy{Require: []string{"libssl3"}}, apt("libssl3", "1.0-1", plainLiar), false, core.DoNotInstall, KindOther,
			"REFUSED libssl3 1.0-1: DO NOT INSTALL — apt is installing libssl3 1.0-1 from this file, but the file says it is evil 1.0-1"},
		{"the file is another version", config.AptPolicy{}, apt("hello", attesttest.BinaryVersion, plainHello), false, core.DoNotInstall, KindOther,
			"but the file says it is hello " + attesttest.DebianVersion},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.policy.Lebowski == "" {
				tc.policy.Lebowski = config.AptRefuse
			}
			g := &Gate{Policy: tc.policy, API: api}
			if strings.Contains(tc.desc, "node down") {
				g.API, g.NodeErr = nil, errors.New("store is locked")
			}
			d := g.Check(context.Background(), tc.act)
			assert.Equal(t, tc.allowed, d.Allowed, d.Line())
			assert.Equal(t, tc.verdict, d.Verdict, d.Line())
			assert.Equal(t, tc.kind, d.Kind, d.Line())
			assert.Contains(t, d.Line(), tc.line)
			if !d.Allowed {
				assert.NotEmpty(t, d.Next, "a refusal says what to run next")
				assert.NotContains(t, d.Line(), "\n", "one line per package")
			}
		})
	}

	// CheckAll reads apt's view of each action.
	in := "VERSION 3\nA=b\n\n" +
		"libc6 - - none < 2.36-9+deb12u4 amd64 same " + debian + "\n" +
		"hello - - none < 2.10-3~o3+1+b1 amd64 none " + binNMU + "\n"
	acts, err := ParseHook(strings.NewReader(in))
	require.NoError(t, err)
	g := &Gate{Policy: config.AptPolicy{Lebowski: config.AptRefuse}, API: api}
	out, ok := g.CheckAll(context.Background(), acts)
	require.Len(t, out, 2)
	assert.False(t, ok)
	assert.True(t, out[0].Allowed, out[0].Line())
	assert.False(t, out[1].Allowed, out[1].Line())
}
