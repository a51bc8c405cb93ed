package opinions

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
)

var reCommit = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// gitCommit returns the last commit that touched path, if path is in a git
// work tree, tracked and unmodified; otherwise "". It never fails: a missing
// git, a file outside any repository or a dirty file just give "".
func gitCommit(ctx context.Context, path string, log *slog.Logger) string {
	abs, err := filepath.Abs(path)
	if err != nil || !inGitTree(filepath.Dir(abs)) {
		return ""
	}
	if _, err := exec.LookPath("git"); err != nil {
		return ""
	}
	dir, base := filepath.Dir(abs), filepath.Base(abs)
	run := func(args ...string) (string, bool) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C")
		out, err := cmd.Output()
		if err != nil {
			log.Debug("git lookup failed", "path", path, "args", args, "err", err)
			return "", false
		}
		return string(bytes.TrimSpace(out)), true
	}
	status, ok := run("status", "--porcelain", "--", base)
	if !ok || status != "" { // untracked or modified: no commit describes it
		return ""
	}
	commit, ok := run("log", "-1", "--format=%H", "--", base)
	if !ok || !reCommit.MatchString(commit) {
		return ""
	}
	return commit
}

// inGitTree reports whether dir or a parent holds a .git entry (cheap check
// before running git at all).
func inGitTree(dir string) bool {
	for {
		if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
			return true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false
		}
		dir = parent
	}
}
