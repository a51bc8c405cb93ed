// Package aptgate is apt's side of Lebowski: it reads what apt's
// DPkg::Pre-Install-Pkgs hook reports and decides, package by package,
// whether dpkg may unpack it (docs/APT.md).
package aptgate

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Action is one package apt is about to unpack.
type Action struct {
	Package    string `json:"package,omitempty"` // "" in protocol version 1
	OldVersion string `json:"old_version,omitempty"`
	NewVersion string `json:"new_version,omitempty"`
	Arch       string `json:"arch,omitempty"`
	Path       string `json:"path"` // the .deb
}

// Limits on the hook input: apt sends its whole configuration first.
const (
	maxLine    = 64 << 10
	maxActions = 100000
)

// ParseHook reads the Pre-Install-Pkgs input in protocol version 1 (one
// .deb path per line), 2 or 3 ("VERSION n", the configuration as
// key=value lines up to a blank line, then one action per line) and
// returns the unpack actions; configure and remove actions are skipped.
func ParseHook(r io.Reader) ([]Action, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("apt hook input: %w", err)
		}
		return nil, nil
	}
	first := sc.Text()
	version := 1
	if v, ok := strings.CutPrefix(first, "VERSION "); ok {
		switch strings.TrimSpace(v) {
		case "2":
			version = 2
		case "3":
			version = 3
		default:
			return nil, fmt.Errorf("apt hook input: protocol %q: want VERSION 2 or 3 (set DPkg::Tools::Options::<cmd>::Version \"3\")", v)
		}
	}
	var out []Action
	add := func(a Action) error {
		if len(out) == maxActions {
			return fmt.Errorf("apt hook input: more than %d packages", maxActions)
		}
		out = append(out, a)
		return nil
	}
	if version == 1 {
		if err := addV1(first, add); err != nil {
			return nil, err
		}
		for sc.Scan() {
			if err := addV1(sc.Text(), add); err != nil {
				return nil, err
			}
		}
		return out, scanErr(sc)
	}
	for sc.Scan() { // configuration, up to a blank line
		if sc.Text() == "" {
			break
		}
	}
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		a, unpack, err := parseAction(line, version)
		if err != nil {
			return nil, fmt.Errorf("apt hook input: action %d: %w", n, err)
		}
		if unpack {
			if err := add(a); err != nil {
				return nil, err
			}
		}
	}
	return out, scanErr(sc)
}

func addV1(line string, add func(Action) error) error {
	if p := strings.TrimSpace(line); p != "" {
		return add(Action{Path: p})
	}
	return nil
}

func scanErr(sc *bufio.Scanner) error {
	if err := sc.Err(); err != nil {
		return fmt.Errorf("apt hook input: %w", err)
	}
	return nil
}

// parseAction reads "name old < new action" (v2) or
// "name old oldarch oldma < new newarch newma action" (v3).
func parseAction(line string, version int) (Action, bool, error) {
	want := 5
	if version == 3 {
		want = 9
	}
	f := strings.SplitN(line, " ", want) // the last field, a path, may hold spaces
	if len(f) != want {
		return Action{}, false, fmt.Errorf("%d fields, want %d in protocol %d: %.80q", len(f), want, version, line)
	}
	a := Action{Package: f[0], OldVersion: f[1]}
	var dir, action string
	if version == 3 {
		dir, a.NewVersion, a.Arch, action = f[4], f[5], f[6], f[8]
	} else {
		dir, a.NewVersion, action = f[2], f[3], f[4]
	}
	switch dir {
	case "<", ">", "=":
	default:
		return Action{}, false, fmt.Errorf("direction %q, want <, > or =", dir)
	}
	switch action {
	case "**CONFIGURE**", "**REMOVE**":
		return a, false, nil
	}
	if !strings.HasSuffix(action, ".deb") {
		return Action{}, false, fmt.Errorf("action %.80q is neither a .deb nor **CONFIGURE**/**REMOVE**", action)
	}
	a.Path = action
	return a, true, nil
}
