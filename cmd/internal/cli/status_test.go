package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// `lebowski status` lists the running builds with the last line of their
// log (control characters removed: build output is arbitrary text) and
// the intents of other builders.
func TestCLIStatusBuildsAndIntents(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	fpr := "0123456789ABCDEF0123456789ABCDEF01234567"
	st := &core.Status{Online: true, PeerID: "12D3KooWTest", Started: now.Add(-time.Hour), Builder: fpr, Version: "test", Claims: 7, Peers: 2,
		Subscriptions: []string{"hello/o3", "nano/vanilla"}, QueuedBuilds: 1,
		RunningBuilds: []string{"hello/bafkreihelloopinion", "nano/vanilla", "zlib/bafkreizlibopinion"},
		Builds: []core.RunningBuild{
			{Recipe: "hello/bafkreihelloopinion", Package: "hello", Opinion: "o3", Started: now.Add(-3 * time.Minute), Reason: "subscribed",
				LogTail: []string{"dpkg-buildpackage: info: source package hello", "\x1b[31mred\x1b[0m " + strings.Repeat("x", 300)}},
			{Recipe: "nano/vanilla", Package: "nano", Opinion: "vanilla", Started: now.Add(-30 * time.Second)},
		},
		Intents: []core.BuildIntent{
			{Recipe: "hello/bafkreihelloopinion", Builder: fpr, Started: now.Add(-2 * time.Minute), Expires: now.Add(10 * time.Minute), Expect: 300},
			{Recipe: "gzip/bafkreigzipopinionwithalongcid", Builder: fpr, Started: now.Add(-time.Minute), Expires: now.Add(-time.Second)},
		},
	}
	var out bytes.Buffer
	require.NoError(t, writeStatus(&out, st, now))
	s := out.String()
	t.Logf("\n%s", s)
	require.NotContains(t, s, "\x1b", "no terminal escape from a build log")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var builds int
	for i, l := range lines {
		if strings.HasPrefix(l, "builds:") {
			builds = i
		}
	}
	require.Equal(t, "builds:         1 queued, 3 running", lines[builds])
	hello, nano, zlib := lines[builds+1], lines[builds+2], lines[builds+3]
	require.True(t, strings.HasPrefix(hello, "  hello/o3 "), hello)
	require.Contains(t, hello, "for 3m")
	require.Contains(t, hello, "subscribed")
	require.Contains(t, hello, "| [31mred [0m xxx")
	require.True(t, strings.HasSuffix(hello, "x…"), "the last line shortened: %q", hello)
	require.Less(t, len([]rune(hello)), 160)
	require.True(t, strings.HasPrefix(nano, "  nano/vanilla "), nano)
	require.Contains(t, nano, "for 30s")
	require.True(t, strings.HasSuffix(nano, "(no output yet)"), nano)
	require.Equal(t, "  zlib/bafkreizlibo…", zlib, "a key the build queue names without details")
	require.Equal(t, "being built elsewhere: 2", lines[builds+4])
	mine, other := lines[builds+5], lines[builds+6]
	require.True(t, strings.HasPrefix(mine, "  hello/o3 "), "the key of a build running here is named: %q", mine)
	require.Contains(t, mine, "by 0123456789ABCDEF…")
	require.Contains(t, mine, "started 2m ago")
	require.Contains(t, mine, "expected ~5m")
	require.True(t, strings.HasSuffix(mine, "expires in 10m"), mine)
	require.True(t, strings.HasPrefix(other, "  gzip/bafkreigzipo… "), other)
	require.True(t, strings.HasSuffix(other, "expired"), other)
	require.Len(t, lines, builds+7)
}

// Without a daemon: nothing runs; --json is core.Status, builds and
// intents included.
func TestCLIStatusIdle(t *testing.T) {
	dd := t.TempDir()
	code, _, errOut := run(t, dd, "key", "gen")
	require.Equal(t, ExitOK, code, errOut)
	code, out, errOut := run(t, dd, "status")
	require.Equal(t, ExitOK, code, errOut)
	require.Contains(t, out, "lebowskid:      not running")
	require.True(t, strings.HasSuffix(out, "builds:         0 queued, 0 running\nbeing built elsewhere: 0\n"), out)
	code, out, errOut = run(t, dd, "--json", "status")
	require.Equal(t, ExitOK, code, errOut)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, []any{}, st["builds"])
	require.Equal(t, []any{}, st["intents"])
	require.Contains(t, st, "running_builds")
	require.Contains(t, st, "queued_builds")
}
