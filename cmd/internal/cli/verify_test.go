package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/attesttest"
	"github.com/lebowski-dist/lebowski/builder/debfile/debfiletest"
	"github.com/lebowski-dist/lebowski/opinions"
)

// Verify never shrugs: whatever file it is given gets a verdict. A real
// hello/o3 .deb that three trusted builders attest is SAFE; every damaged
// copy of it (each member corrupted in turn, truncations, a bad ar
// header), a non-.deb, an empty file and a package for another
// architecture are DO NOT INSTALL with exit 1 and say what is wrong;
// only a path that is not a file is a usage error.
func TestCLIVerifyDamagedFiles(t *testing.T) {
	dd, files := t.TempDir(), t.TempDir()
	op, err := opinions.Find("../../../opinions", "hello/o3")
	require.NoError(t, err)
	goodPath := debfiletest.Build(t, files, debfiletest.Package{Name: "hello", Version: op.BinaryVersion().String()})
	good, err := os.ReadFile(goodPath)
	require.NoError(t, err)
	goodSum := sumBytes(good)

	var lines []string
	for _, id := range attesttest.Fresh(t, 3) {
		c := attesttest.Claim(t, id, func(s *attest.Statement) {
			s.Opinion.CID = op.CID()
			s.Artifacts = []attest.Artifact{{Name: filepath.Base(goodPath), SHA256: goodSum}}
		})
		lines = append(lines, string(attesttest.Wire(t, c)))
		code, _, errOut := run(t, dd, "claims", "import", writeLines(t, files, lines[len(lines)-1:]))
		require.Equal(t, ExitOK, code, errOut)
		code, _, errOut = run(t, dd, "key", "trust", id.Fingerprint())
		require.Equal(t, ExitOK, code, errOut)
	}

	code, out, errOut := run(t, dd, "verify", "--no-rebuild", goodPath)
	require.Equal(t, ExitOK, code, "%s%s", out, errOut)
	require.Contains(t, out, "SAFE TO INSTALL")

	// The verdict comes from the file's content, not its name.
	renamed := filepath.Join(files, "download.bin")
	require.NoError(t, os.WriteFile(renamed, good, 0o644))
	code, out, _ = run(t, dd, "verify", "--no-rebuild", renamed)
	require.Equal(t, ExitOK, code, out)

	for i, d := range debfiletest.Damages(t, good) {
		t.Run(d.Name, func(t *testing.T) {
			p := filepath.Join(files, "damaged-"+string(rune('a'+i))+".deb")
			require.NoError(t, os.WriteFile(p, d.Data, 0o644))
			code, out, errOut := run(t, dd, "verify", "--no-rebuild", p)
			require.Equal(t, ExitMismatch, code, "%s%s", out, errOut)
			require.Contains(t, out, "DO NOT INSTALL")
			require.Contains(t, out, "not an intact .deb")
			if d.Member != "" {
				require.Contains(t, out, d.Member)
			}
			switch {
			case d.Member == "data.tar.xz" && strings.HasPrefix(d.Name, "flipped"):
				// The control data is intact: compared with what the
				// builders attest for that file, and a red flag is signed.
				require.Contains(t, out, "ERROR: Hash mismatch! Expected "+goodSum+" Got "+sumBytes(d.Data))
				require.Contains(t, errOut, "red flag signed")
			case len(d.Data) > 0:
				require.Contains(t, out, "no builder attests a file with sha256 "+sumBytes(d.Data))
			}
		})
	}

	other := debfiletest.Build(t, files, debfiletest.Package{Name: "hello", Version: op.BinaryVersion().String(), Arch: "arm64"})
	code, out, _ = run(t, dd, "verify", "--no-rebuild", other)
	require.Equal(t, ExitMismatch, code, out)
	require.Contains(t, out, "built for arm64")
	require.Contains(t, out, "DO NOT INSTALL")

	// A version shaped like an opinion build that does not parse exactly:
	// refused as the apt hook refuses it, without a rebuild.
	for _, v := range []string{"2.10-3~o3+01", "2.10-3~o3+1~x", "2.10-3~o3+1+b1"} {
		odd := debfiletest.Build(t, t.TempDir(), debfiletest.Package{Name: "hello", Version: v})
		code, out, errOut := run(t, dd, "verify", "--no-rebuild", odd)
		require.Equal(t, ExitMismatch, code, "%s: %s%s", v, out, errOut)
		require.Contains(t, out, "DO NOT INSTALL", v)
		require.Contains(t, out, "version "+v, v)
		require.NotContains(t, errOut, "red flag signed", v)
	}

	code, out, errOut = run(t, dd, "--json", "verify", "--no-rebuild", other)
	require.Equal(t, ExitMismatch, code, errOut)
	require.True(t, strings.HasPrefix(strings.TrimSpace(out), "{"), out)
	require.Contains(t, out, `"decision": "DO NOT INSTALL"`)

	for _, tc := range []struct{ path, msg string }{
		{filepath.Join(files, "nope.deb"), "no such file"},
		{files, "not a regular file"},
	} {
		code, out, errOut := run(t, dd, "verify", "--no-rebuild", tc.path)
		require.Equal(t, ExitUsage, code, out)
		require.Contains(t, errOut, tc.msg)
	}
}

func writeLines(t *testing.T, dir string, lines []string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "claims-*.jsonl")
	require.NoError(t, err)
	_, err = f.WriteString(strings.Join(lines, "\n") + "\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return f.Name()
}

func sumBytes(b []byte) string { return sum(string(b)) }
