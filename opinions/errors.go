package opinions

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors. Every problem with the content of an opinion file
// unwraps to ErrInvalid (the CLI maps it to exit 2, the network to Reject).
var (
	// ErrInvalid: the opinion file breaks a rule of docs/OPINIONS.md.
	ErrInvalid = errors.New("invalid opinion")
	// ErrNotFound: Find found no opinion with that reference.
	ErrNotFound = errors.New("opinion not found")
	// ErrAmbiguous: Find was given a bare name that more than one package uses.
	ErrAmbiguous = errors.New("ambiguous opinion reference")
)

// Error is one problem in an opinion file, with its position.
type Error struct {
	File   string // path as given to Load
	Line   int    // 1-based; 0 when the problem is not tied to a line
	Column int    // 1-based; 0 when unknown
	Field  string // dotted field path, e.g. build.cflags.append[0]; empty for whole-file problems
	Msg    string // what is wrong
	Hint   string // what to do about it; may be empty
}

// Error formats the problem as file:line:column: field: msg (hint: hint).
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// ErrorList is every problem found in one opinion file, sorted by position.
// errors.As(err, &*Error) finds the first; errors.Is(err, ErrInvalid) holds.
type ErrorList []*Error

// Error joins the problems, one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the problems for errors.Is / errors.As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return a.Field < b.Field
	})
}
