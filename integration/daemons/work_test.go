package daemons

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/builder/buildertest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/lebowski-dist/lebowski/cmd/node/daemon/daemontest"
)

// TestStatusShowsBuildsAndIntents: the status of a node lists its running
// build with the tail of the log so far, and the build another trusted
// node announced.
func TestStatusShowsBuildsAndIntents(t *testing.T) {
	var lines []string
	for i := 1; i <= 100; i++ {
		lines = append(lines, fmt.Sprintf("line %d of the build", i))
	}
	lines = append(lines, strings.Repeat("é", 2*core.MaxLogLine)+"\xff")
	release := make(chan struct{})
	ds := daemontest.Start(t, 2, daemontest.Options{Config: func(_ int, c *config.Config) {
		c.Builds.IntentTTL = 3 * time.Second // renewed every second: the keys are imported after the start
	}, Builder: func(i int, fb *buildertest.Fake) {
		fb.Lines, fb.Release = lines, release
	}})
	ctx := context.Background()
	c0 := ds[0].Client(t)
	for i, a := range ds {
		_, err := a.Client(t).ImportKey(ctx, ds[1-i].Identity().PublicKey(), attest.TrustTrusted, "test")
		require.NoError(t, err)
	}
	var st *core.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = c0.Status(ctx)
		return err == nil && len(st.Builds) == 1 && len(st.Builds[0].LogTail) == core.MaxLogTail && len(st.Intents) == 1
	}, 20*time.Second, 20*time.Millisecond, "node 0 shows its build with a full log tail and node 1's intent")
	b := st.Builds[0]
	require.Equal(t, "hello", b.Package)
	require.Equal(t, "o3", b.Opinion)
	require.Equal(t, "line 62 of the build", b.LogTail[0], "the last %d lines, oldest first", core.MaxLogTail)
	last := b.LogTail[len(b.LogTail)-1]
	require.True(t, utf8.ValidString(last))
	require.LessOrEqual(t, utf8.RuneCountInString(last), core.MaxLogLine+1, "a long line is cut")
	in := st.Intents[0]
	require.Equal(t, ds[1].Identity().Fingerprint(), in.Builder)
	require.Equal(t, b.Recipe, in.Recipe)
	require.True(t, in.Expires.After(time.Now()))
	close(release)
	require.Eventually(t, func() bool {
		var err error
		st, err = c0.Status(ctx)
		return err == nil && len(st.Builds) == 0
	}, 20*time.Second, 20*time.Millisecond, "the build finished")
}

// TestReverifyOldRecipes: once a node's own claim is older than
// builds.reverify_after, it rebuilds the recipe and signs a new claim.
func TestReverifyOldRecipes(t *testing.T) {
	ds := daemontest.Start(t, 1, daemontest.Options{Config: func(_ int, c *config.Config) {
		c.Builds.ReverifyAfter = 2 * time.Second
	}})
	c := ds[0].Client(t)
	ctx := context.Background()
	require.Eventually(t, func() bool { return ds[0].Builder.Builds.Load() >= 2 }, 20*time.Second, 50*time.Millisecond,
		"the recipe is rebuilt after its claim got older than reverify_after")
	require.Eventually(t, func() bool {
		cl, err := c.Claims(ctx, core.ClaimsQuery{Package: "hello"})
		return err == nil && len(cl) >= 2
	}, 10*time.Second, 50*time.Millisecond, "two own claims stored")
	info, err := c.Info(ctx, core.InfoQuery{Package: "hello", Opinion: "o3"})
	require.NoError(t, err)
	require.True(t, info.Recipes[0].Own)
	require.False(t, info.Recipes[0].Report.Conflict, "a re-verification that agrees is not a conflict")
}
