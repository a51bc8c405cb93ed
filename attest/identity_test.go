package attest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIdentitySaveLoad(t *testing.T) {
	id := newID(t, "saver")
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "builder.asc")
	if err := id.Save(path, false); err != nil {
		t.Fatalf("save: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %o, want 600", fi.Mode().Perm())
	}
	if err := id.Save(path, false); err == nil {
		t.Error("Save overwrote an existing key without overwrite=true")
	}
	if err := id.Save(path, true); err != nil {
		t.Errorf("Save with overwrite: %v", err)
	}
	loaded, err := LoadIdentity(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if loaded.Fingerprint() != id.Fingerprint() {
		t.Fatalf("fingerprint %s after load, want %s", loaded.Fingerprint(), id.Fingerprint())
	}
	c, err := Sign(loaded, testStatement())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(c.Raw, NewKeyring(id.Entity), VerifyOptions{RequireKnownKey: true}); err != nil {
		t.Fatalf("claim signed by the loaded key does not verify with the original: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("Save left %d files behind (temporary files?)", len(entries))
	}

	tests := []struct {
		desc  string
		setup func(t *testing.T) string
		want  string
	}{
		{"group-readable", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "k.asc")
			b, _ := os.ReadFile(path)
			os.WriteFile(p, b, 0o640)
			os.Chmod(p, 0o640)
			return p
		}, "chmod 600"},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.asc") }, "lebowski key gen"},
		{"public key only", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "pub.asc")
			arm, _ := id.ArmoredPublicKey()
			os.WriteFile(p, []byte(arm), 0o600)
			return p
		}, "private key"},
		{"garbage", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "g.asc")
			os.WriteFile(p, []byte("hello"), 0o600)
			return p
		}, "load key"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := LoadIdentity(tt.setup(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadIdentity error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	a, b := testIdentities(t)
	arm, _ := a.ArmoredPublicKey()
	two := append(bytes.Clone(a.PublicKey()), b.PublicKey()...)
	tests := []struct {
		desc    string
		in      []byte
		wantFpr string
	}{
		{"binary", a.PublicKey(), a.Fingerprint()},
		{"armored", []byte(arm), a.Fingerprint()},
		{"armored with surrounding space", []byte("\n  " + arm), a.Fingerprint()},
		{"two keys", two, ""},
		{"truncated", a.PublicKey()[:40], ""},
		{"oversize", bytes.Repeat([]byte{0}, 64<<10+1), ""},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			e, err := ParsePublicKey(tt.in)
			if tt.wantFpr == "" {
				if err == nil {
					t.Fatalf("accepted, fingerprint %s", Fingerprint(e))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if Fingerprint(e) != tt.wantFpr {
				t.Fatalf("fingerprint %s, want %s", Fingerprint(e), tt.wantFpr)
			}
			if e.PrivateKey != nil {
				t.Error("public key parse returned private material")
			}
		})
	}
}

func TestKeyring(t *testing.T) {
	a, b := testIdentities(t)
	k := NewKeyring(a.Entity)
	if k.Len() != 1 || k.Lookup(a.Fingerprint()) == nil || k.Lookup(b.Fingerprint()) != nil {
		t.Fatal("keyring lookup wrong")
	}
	k.Add(b.Entity)
	k.Add(b.Entity)
	if k.Len() != 2 || k.Lookup(b.Fingerprint()) != b.Entity {
		t.Fatal("keyring add wrong")
	}
	if k.Lookup(strings.ToLower(a.Fingerprint())) != nil {
		t.Fatal("lookup must be by the canonical upper-case fingerprint")
	}
}
