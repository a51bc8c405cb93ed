package human

import (
	"testing"
	"time"
)

func TestAgo(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now.Add(time.Minute), "in the future"},
		{now.Add(-42 * time.Second), "42s ago"},
		{now.Add(-5 * time.Minute), "5m ago"},
		{now.Add(-47 * time.Hour), "47h ago"},
		{now.Add(-72 * time.Hour), "3d ago"},
	} {
		if got := Ago(now, tc.t, "never"); got != tc.want {
			t.Errorf("Ago(%v) = %q, want %q", now.Sub(tc.t), got, tc.want)
		}
	}
}

func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 45 * time.Second: "45s", 90 * time.Second: "1m",
		2*time.Hour + time.Minute: "2h", 47 * time.Hour: "47h", 49 * time.Hour: "2d",
	} {
		if got := Span(d); got != want {
			t.Errorf("Span(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestShort(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"ABCDEF", 8, "ABCDEF"},
		{"ABCDEF", 6, "ABCDEF"},
		{"ABCDEF", 4, "ABCD…"},
		{"ünïcödé", 3, "ünï…"},
	} {
		if got := Short(tc.s, tc.n); got != tc.want {
			t.Errorf("Short(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.00 kB", 34_500: "34.5 kB", 2_506_080_256: "2.51 GB", 1_679_523_840: "1.68 GB", 5 << 50: "5.63 PB"} {
		if got := Bytes(in); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", in, got, want)
		}
	}
}
