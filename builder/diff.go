package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// Diff compares two build outputs (files or directories) with diffoscope
// and returns its text report; an empty report means no difference. A
// missing diffoscope is an ErrEnvironment.
func Diff(ctx context.Context, a, b string) ([]byte, error) {
	for _, p := range []string{a, b} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("diff: %w", err)
		}
	}
	bin, err := exec.LookPath("diffoscope")
	if err != nil {
		return nil, fmt.Errorf("diff: %w: diffoscope not found: install it with `apt-get install diffoscope-minimal`", ErrEnvironment)
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--text", "-", "--no-progress", a, b)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC")
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil, nil // identical
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return out.Bytes(), nil // differences found
	default:
		return nil, fmt.Errorf("diff %s %s: diffoscope: %v: %s", a, b, err, truncate(stderr.String(), 2000))
	}
}
