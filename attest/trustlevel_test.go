package attest

import (
	"errors"
	"testing"
)

func TestTrust(t *testing.T) {
	tests := []struct {
		desc   string
		level  Trust
		norm   Trust
		votes  bool
		stored bool
	}{
		{"distrusted", TrustDistrusted, TrustDistrusted, false, true},
		{"unknown counts as unvetted", TrustUnknown, TrustUnvetted, false, true},
		{"unvetted", TrustUnvetted, TrustUnvetted, false, true},
		{"certified is derived", TrustCertified, TrustCertified, true, false},
		{"trusted", TrustTrusted, TrustTrusted, true, true},
		{"own", TrustOwn, TrustOwn, true, true},
		{"garbage is unvetted", Trust("root"), TrustUnvetted, false, false},
		{"empty is unvetted", Trust(""), TrustUnvetted, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := tc.level.Normalize(); got != tc.norm {
				t.Errorf("Normalize() = %q, want %q", got, tc.norm)
			}
			if got := tc.level.Normalize().Votes(); got != tc.votes {
				t.Errorf("Votes() = %v, want %v", got, tc.votes)
			}
			if got := tc.level.Stored(); got != tc.stored {
				t.Errorf("Stored() = %v, want %v", got, tc.stored)
			}
		})
	}
	for _, s := range []string{"trusted", "unvetted", "distrusted"} {
		if got, err := ParseOperatorTrust(s); err != nil || string(got) != s {
			t.Errorf("ParseOperatorTrust(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"own", "certified", "unknown", "ultimate", ""} {
		if _, err := ParseOperatorTrust(s); !errors.Is(err, ErrInvalidTrust) {
			t.Errorf("ParseOperatorTrust(%q): err = %v, want ErrInvalidTrust", s, err)
		}
	}
}

func TestSetDigest(t *testing.T) {
	a := DigestOf([]string{"x", "y", "z"})
	b := DigestOf([]string{"z", "x", "y"})
	if a != b {
		t.Fatal("digest depends on order")
	}
	var inc SetDigest
	for _, id := range []string{"y", "z", "x"} {
		inc.Add(id)
	}
	if inc != a || inc.Count != 3 {
		t.Fatalf("incremental digest %+v differs from %+v", inc, a)
	}
	if c := DigestOf([]string{"x", "y"}); c == a || c.HexHash() == a.HexHash() {
		t.Fatal("different sets give the same digest")
	}
	if len(a.HexHash()) != 64 {
		t.Fatalf("hex hash %q", a.HexHash())
	}
}
