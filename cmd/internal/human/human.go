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
	if now.Before(t) {
		return "in the future"
	}
	return Span(now.Sub(t)) + " ago"
}

// Span says a duration in whole units: "42s", "5m", "3h" (up to 48 h),
// "2d"; negative durations are "0s".
func Span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(max(d, 0).Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
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

// Bytes says a size in decimal units: "512 B", "3.4 kB", "1.68 GB".
func Bytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v < 10 {
		return fmt.Sprintf("%.2f %cB", v, "kMGTP"[exp])
	}
	return fmt.Sprintf("%.1f %cB", v, "kMGTP"[exp])
}
