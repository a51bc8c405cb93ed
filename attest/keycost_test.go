package attest

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // building a hostile DSA key
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Keys whose self-signature verification would cost seconds (DSA with
// huge parameters: minutes) are refused before go-crypto verifies
// anything; ordinary keys still parse.
func TestParsePublicKeyRefusesCostlyKeys(t *testing.T) {
	big := func(bits int) *big.Int {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
		if err != nil {
			t.Fatal(err)
		}
		return n.SetBit(n, bits-1, 1)
	}
	serialize := func(pk *packet.PublicKey) []byte {
		var b bytes.Buffer
		if err := pk.Serialize(&b); err != nil {
			t.Fatal(err)
		}
		// A user ID and a "self-signature" would follow; the refusal
		// comes before any of it is read.
		uid := packet.NewUserId("mallory", "", "")
		if err := uid.Serialize(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	now := time.Now()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	hugeRSA := &rsa.PublicKey{N: big(16384), E: 65537}
	for _, tc := range []struct {
		desc string
		data []byte
		want string
	}{
		{"DSA with 16,000-bit q", serialize(packet.NewDSAPublicKey(now, &dsa.PublicKey{Parameters: dsa.Parameters{P: big(16000), Q: big(16000), G: big(15000)}, Y: big(15000)})), "DSA key"},
		{"DSA with a 4096-bit p", serialize(packet.NewDSAPublicKey(now, &dsa.PublicKey{Parameters: dsa.Parameters{P: big(4096), Q: big(256), G: big(4000)}, Y: big(4000)})), "DSA key"},
		{"RSA of 16384 bits", serialize(packet.NewRSAPublicKey(now, hugeRSA)), "RSA key of 16384 bits"},
		{"ordinary RSA key (no self-signature)", serialize(packet.NewRSAPublicKey(now, &rsaKey.PublicKey)), "parse public key:"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			start := time.Now()
			_, err := ParsePublicKey(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %s", d)
			}
		})
	}
	// Builder keys, armored or not, still parse.
	id := newID(t, "ok")
	arm, err := id.ArmoredPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{id.PublicKey(), []byte(arm)} {
		if _, err := ParsePublicKey(b); err != nil {
			t.Fatal(err)
		}
	}
}
