package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
)

// runMain runs lebowskid with args and returns the exit code, stdout and
// stderr.
func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func TestInit(t *testing.T) {
	const ownConfig = "# mine\nsubscribe: [hello/o3]\n"
	for _, tc := range []struct {
		desc string
		// setup prepares dir (the data dir) and returns extra arguments.
		setup func(t *testing.T, dir string) []string
		args  []string
		code  int
		out   []string // in stdout
		err   []string // in stderr
		check func(t *testing.T, dir string)
	}{
		{desc: "fresh node", code: 0,
			out: []string{"config.yaml (written)", "builder.key (generated)", "peer.key (generated)", "key export >", "Next steps", "subscribe hello/o3", "key import --trust trusted"},
			check: func(t *testing.T, dir string) {
				l := config.Layout{Dir: dir}
				for _, p := range []string{l.BuilderKey(), l.PeerKey()} {
					fi, err := os.Stat(p)
					require.NoError(t, err)
					require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
				}
				fi, err := os.Stat(dir)
				require.NoError(t, err)
				require.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "data dir")
				c, err := config.Load(dir, "")
				require.NoError(t, err, "the written config loads strictly")
				require.Empty(t, c.Bootstrap)
				require.Empty(t, c.Subscribe)
				require.Contains(t, readFile(t, l.Config()), "\nbootstrap: []\n")
			}},
		{desc: "second run keeps everything", code: 0,
			setup: func(t *testing.T, dir string) []string {
				code, _, stderr := runMain(t, "init", "--data-dir", dir)
				require.Equal(t, 0, code, stderr)
				return nil
			},
			out: []string{"config.yaml (exists, kept; --force replaces it)", "builder.key (exists, kept)", "peer.key (exists, kept)"}},
		{desc: "existing config kept", code: 0,
			setup: func(t *testing.T, dir string) []string {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(ownConfig), 0o644))
				return nil
			},
			out: []string{"config.yaml (exists, kept", "builder.key (generated)"},
			check: func(t *testing.T, dir string) {
				require.Equal(t, ownConfig, readFile(t, filepath.Join(dir, "config.yaml")))
				require.NoFileExists(t, filepath.Join(dir, "config.yaml.bak"))
			}},
		{desc: "force replaces the config, keeps the old one and the keys", code: 0,
			setup: func(t *testing.T, dir string) []string {
				code, _, stderr := runMain(t, "init", "--data-dir", dir)
				require.Equal(t, 0, code, stderr)
				require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(ownConfig), 0o644))
				return nil
			},
			args: []string{"--force"},
			out:  []string{"config.yaml (replaced; the old one is ", "builder.key (exists, kept)", "peer.key (exists, kept)"},
			check: func(t *testing.T, dir string) {
				require.Equal(t, ownConfig, readFile(t, filepath.Join(dir, "config.yaml.bak")))
				require.Contains(t, readFile(t, filepath.Join(dir, "config.yaml")), "written by `lebowskid init`")
			}},
		{desc: "config elsewhere (--config)", code: 0,
			setup: func(t *testing.T, dir string) []string {
				return []string{"--config", filepath.Join(dir, "etc", "lebowski.yaml")}
			},
			out: []string{"etc/lebowski.yaml (written)", "--config "},
			check: func(t *testing.T, dir string) {
				require.FileExists(t, filepath.Join(dir, "etc", "lebowski.yaml"))
				require.NoFileExists(t, filepath.Join(dir, "config.yaml"))
				require.FileExists(t, filepath.Join(dir, "builder.key"))
			}},
		{desc: "invalid existing config", code: 1,
			setup: func(t *testing.T, dir string) []string {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("subscribe: [hello/o3]\nbogus_key: 1\n"), 0o644))
				return nil
			},
			err: []string{"lebowskid init: ", "config.yaml does not load", "bogus_key", "--force"},
			check: func(t *testing.T, dir string) {
				require.NoFileExists(t, filepath.Join(dir, "builder.key"), "nothing done")
			}},
		{desc: "unwritable data dir", code: 1,
			setup: func(t *testing.T, dir string) []string {
				f := filepath.Join(dir, "file")
				require.NoError(t, os.WriteFile(f, nil, 0o644))
				return []string{"--data-dir", filepath.Join(f, "node")} // a path under a file: fails for root too
			},
			err: []string{"lebowskid init: cannot create the node's data dir ", "file/node", "not a directory", "--data-dir"}},
		{desc: "private key readable by others", code: 1,
			setup: func(t *testing.T, dir string) []string {
				code, _, stderr := runMain(t, "init", "--data-dir", dir)
				require.Equal(t, 0, code, stderr)
				require.NoError(t, os.Chmod(filepath.Join(dir, "builder.key"), 0o644))
				return nil
			},
			err: []string{"builder.key", "chmod 600"}},
		{desc: "stray argument", args: []string{"now"}, code: 2, err: []string{"unknown command"}},
		{desc: "unknown flag", args: []string{"--bogus"}, code: 2, err: []string{"lebowskid init: unknown flag: --bogus (see lebowskid init --help)"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "node")
			require.NoError(t, os.Mkdir(dir, 0o700))
			args := []string{"init", "--data-dir", dir}
			if tc.setup != nil {
				args = append(args, tc.setup(t, dir)...)
			}
			args = append(args, tc.args...)
			code, stdout, stderr := runMain(t, args...)
			require.Equal(t, tc.code, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			for _, s := range tc.out {
				require.Contains(t, stdout, s)
			}
			for _, s := range tc.err {
				require.Contains(t, stderr, s)
			}
			if tc.code == 0 {
				require.Empty(t, stderr)
				id, err := attest.LoadIdentity(filepath.Join(dir, "builder.key"))
				require.NoError(t, err)
				require.Contains(t, stdout, "fingerprint  "+id.Fingerprint())
				require.Contains(t, stdout, "key export > "+id.Fingerprint()+".asc")
			}
			if tc.check != nil {
				tc.check(t, dir)
			}
		})
	}
}

// TestInitTwiceChangesNothing: the second run leaves every file as it was.
func TestInitTwiceChangesNothing(t *testing.T) {
	dir := t.TempDir()
	code, first, stderr := runMain(t, "init", "--data-dir", dir)
	require.Equal(t, 0, code, stderr)
	snap := func() map[string]string {
		m := map[string]string{}
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range ents {
			m[e.Name()] = readFile(t, filepath.Join(dir, e.Name()))
		}
		return m
	}
	before := snap()
	code, second, stderr := runMain(t, "init", "--data-dir", dir)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, before, snap())
	peerID := regexp.MustCompile(`peer id +(\S+)`)
	require.Equal(t, peerID.FindStringSubmatch(first)[1], peerID.FindStringSubmatch(second)[1])
}

// TestInitConfigDefaults: every commented "# key: value" line of the
// written config is a real key whose value is the default, so uncommenting
// them all gives the same configuration as none.
func TestInitConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runMain(t, "init", "--data-dir", dir)
	require.Equal(t, 0, code, stderr)
	p := config.Layout{Dir: dir}.Config()
	option := regexp.MustCompile(`^#( |   )([a-z_]+):( |$)`)
	var lines []string
	n := 0
	for _, l := range strings.Split(readFile(t, p), "\n") {
		if option.MatchString(l) {
			l = strings.TrimPrefix(l, "# ")
			n++
		}
		lines = append(lines, l)
	}
	require.GreaterOrEqual(t, n, 15, "commented defaults")
	uncommented := filepath.Join(t.TempDir(), "all.yaml")
	require.NoError(t, os.WriteFile(uncommented, []byte(strings.Join(lines, "\n")), 0o644))

	got, err := config.Load(dir, uncommented)
	require.NoError(t, err)
	got.Defaults()
	require.NoError(t, got.Validate())
	want := &config.Config{DataDir: dir}
	want.Defaults()
	want.Bootstrap, want.Subscribe, want.TrustedKeys = []string{}, []string{}, []string{}
	require.Equal(t, want, got)
}
