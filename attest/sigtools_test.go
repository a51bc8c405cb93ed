package attest

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

type openpgpEntity = openpgp.Entity

func decodeArmor(t testing.TB, s string) []byte {
	t.Helper()
	blk, err := armor.Decode(strings.NewReader(s))
	if err != nil {
		t.Fatalf("armor decode: %v", err)
	}
	b, err := readAllLimit(blk)
	if err != nil {
		t.Fatalf("armor body: %v", err)
	}
	return b
}

func readAllLimit(blk *armor.Block) ([]byte, error) {
	return io.ReadAll(io.LimitReader(blk.Body, 1<<20))
}

func mustArmorSig(t testing.TB, body []byte) string {
	t.Helper()
	s, err := armorSignature(body)
	if err != nil {
		t.Fatalf("armor: %v", err)
	}
	return s
}

func mustArmorKey(t testing.TB, id *Identity) string {
	t.Helper()
	s, err := id.ArmoredPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dropCRC(t testing.TB, s string) string {
	t.Helper()
	lines := strings.Split(s, "\n")
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "=") && len(l) == 5 {
			continue
		}
		out = append(out, l)
	}
	r := strings.Join(out, "\n")
	if r == s {
		t.Fatal("no CRC line found")
	}
	return r
}

// sigLayout returns the header length and the offset (in pkt) of the
// unhashed subpacket length of a v4 signature packet.
func sigLayout(t testing.TB, pkt []byte) (hdr, unhashedAt int) {
	t.Helper()
	if pkt[0] != 0xc2 || pkt[1] >= 192 {
		t.Fatalf("unexpected packet header % x", pkt[:2])
	}
	hdr = 2
	b := pkt[hdr:]
	h := int(b[4])<<8 | int(b[5])
	return hdr, hdr + 6 + h
}

// addUnhashed inserts a copy of the issuer key ID subpacket (type 16) in
// the unhashed area, as GnuPG does: not covered by the signature hash.
func addUnhashed(t testing.TB, pkt []byte) []byte {
	t.Helper()
	hdr, at := sigLayout(t, pkt)
	if pkt[at] != 0 || pkt[at+1] != 0 {
		t.Fatalf("unhashed area not empty")
	}
	p, err := packet.Read(bytes.NewReader(pkt))
	if err != nil {
		t.Fatal(err)
	}
	kid := *p.(*packet.Signature).IssuerKeyId
	sub := []byte{9, 16} // len 9: type 16 (issuer) + the real 8-byte key ID
	sub = binary.BigEndian.AppendUint64(sub, kid)
	body := append([]byte{}, pkt[hdr:at]...)
	body = append(body, 0, byte(len(sub)))
	body = append(body, sub...)
	body = append(body, pkt[at+2:]...)
	if len(body) >= 192 {
		t.Fatalf("test helper only handles one-octet lengths")
	}
	return append([]byte{0xc2, byte(len(body))}, body...)
}

// tweakMPIBits lowers the bit count of the S MPI of an EdDSA signature
// while keeping the same number of bytes, if that is possible.
func tweakMPIBits(t testing.TB, pkt []byte) []byte {
	t.Helper()
	_, at := sigLayout(t, pkt)
	p := at + 2 + 2 // skip unhashed len (empty) and the hash tag
	// R MPI
	rbits := int(pkt[p])<<8 | int(pkt[p+1])
	rlen := (rbits + 7) / 8
	// Set R's bit count to the largest value that still reads rlen bytes
	// but differs from the minimal one (or the smallest if it is the largest).
	m := bytes.Clone(pkt)
	nb := rlen * 8
	if nb == rbits {
		nb = rlen*8 - 7
	}
	m[p], m[p+1] = byte(nb>>8), byte(nb)
	return m
}

// checkSignatureLoose verifies sig with go-crypto only, without the
// canonical-form rule.
func checkSignatureLoose(id *Identity, payload, sig []byte) error {
	_, err := openpgp.CheckDetachedSignature(openpgp.EntityList{id.Entity}, bytes.NewReader(payload), bytes.NewReader(sig), pgpConfig())
	return err
}

// flipHashTag changes the 16-bit hash tag, which is outside the signed data.
func flipHashTag(t testing.TB, pkt []byte) []byte {
	t.Helper()
	_, at := sigLayout(t, pkt)
	m := bytes.Clone(pkt)
	m[at+2] ^= 0xff
	return m
}
