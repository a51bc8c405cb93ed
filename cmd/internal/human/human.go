// Package human formats values for people: the CLI's tables and the status
// page say times the same way.
package human

import (
	"fmt"
	"time"
)

// Ago says how long before now t was ("42s ago", "5m ago", "3h ago",
// "2d ago"), zero for the zero time.
func Ago(now, t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// Short is s cut to its first n characters (runes, so UTF-8 stays whole),
// with "…" when it was longer.
func Short(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
