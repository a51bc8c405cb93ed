package attest

import (
	"bytes"
	"container/list"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/big"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Builder keys arrive from the network (the keys topic, claims that embed
// their signer's key, sync replies, imports) and go-crypto verifies every
// self-signature while parsing a key, without de-duplicating repeated
// packets: one brainpoolP512 key of 38 KB with its self-signature
// repeated 139 times costs more than a second of CPU. So before go-crypto
// sees a key, checkKeyCost walks its raw packets (framing, key algorithm
// fields, signature headers; no cryptography) and refuses anything outside
// the rules below. What it lets through costs at most MaxKeyVerifications
// signature verifications of total weight MaxKeyVerifyCost, plus
// go-crypto's parse of at most MaxKeySignatures signature packets.
//
// Allowed key algorithms (BuilderKeyAlgorithms), for the primary key and
// for subkeys:
//
//   - Ed25519: legacy EdDSA (algorithm 22) on the Ed25519 curve, as
//     GenerateIdentity and GnuPG make, and RFC 9580 Ed25519 (algorithm 27);
//   - RSA (algorithm 1) with a modulus of 2048 to 4096 bits and an odd
//     public exponent from 3 to 2^24-1 (go-crypto's own limit).
//
// Subkeys may also be Curve25519 encryption keys (ECDH on Curve25519,
// algorithm 18, GnuPG's cv25519 subkey; X25519, algorithm 25): a builder
// never uses them, but keys from GnuPG carry one, and parsing costs only
// their binding signature, made by the primary key. Everything else is
// refused with an error naming the algorithm: DSA, ElGamal, ECDSA on any
// curve (NIST, brainpool, secp256k1), ECDH on other curves, Ed448, X448,
// post-quantum algorithms, v3 and v5 keys. Secret-key packets are refused
// too: parsing one validates the private key (an RSA private-key check
// costs milliseconds), and a public-key parser has no use for it.
const (
	minRSABits     = 2048
	maxRSABits     = 4096
	maxRSAExponent = 1<<24 - 1
)

// BuilderKeyAlgorithms names the allowed key algorithms, for error
// messages and documentation.
const BuilderKeyAlgorithms = "Ed25519 (EdDSA algorithm 22 or 27) or RSA of 2048-4096 bits; subkeys also Curve25519 encryption (ECDH cv25519, X25519)"

// Bounds on the packets of one key. MergeKey adds to a stored key only
// key revocations (at most MaxRevocations, each verified while parsing)
// and third-party certifications (at most MaxCertifications, not
// verified while parsing); the verification bounds below keep room for
// ReservedRevocations key revocations, so that a key the rules accept
// still parses, and its revocation still spreads, after its owner
// revokes it (superseded, then compromised, say).
const (
	// MaxKeyUserIDs bounds the user IDs and user attributes of a key.
	MaxKeyUserIDs = 8
	// MaxKeySubkeys bounds the subkeys of a key.
	MaxKeySubkeys = 8
	// MaxKeyVerifications bounds the signatures go-crypto verifies while
	// parsing a key: user-ID self-signatures (and self-issued
	// certification revocations), every signature following a subkey
	// (bindings and subkey revocations) and the back-signature embedded in
	// a signing subkey's binding, direct-key self-signatures, and key
	// revocations (at most MaxRevocations, and counted as at least
	// ReservedRevocations). Signatures without an issuer count as
	// self-signatures.
	MaxKeyVerifications = 16
	// MaxKeyVerifyCost bounds the total weight of those verifications,
	// in units of one Ed25519 verification (about 40 µs; see
	// BenchmarkParseBaseline): Ed25519 and RSA up to 2048 bits weigh 1,
	// RSA up to 3072 bits 4, RSA up to 4096 bits 7 (Go's RSA has an
	// assembly fast path up to 2048 bits only: about 30 µs, 170 µs,
	// 300 µs). With the reserved revocations, an Ed25519 or RSA-2048 key
	// may carry 14 other self-signatures, an RSA-3072 key 6, an RSA-4096
	// key 2 (one user ID and one encryption subkey: GnuPG's layout).
	MaxKeyVerifyCost = 32
	// ReservedRevocations is the number of key revocations the bounds
	// above always leave room for.
	ReservedRevocations = 2
	// MaxKeySignatures bounds all signature packets of a key; third-party
	// certifications are parsed but not verified.
	MaxKeySignatures = MaxCertifications + MaxRevocations + MaxKeyVerifications
	// MaxUserIDBytes bounds one user ID: each self-signature over it
	// hashes it again.
	MaxUserIDBytes = 1024
	// maxKeyBytes bounds a key block, binary or armored.
	maxKeyBytes = 64 << 10
)

// ErrKeyNotAllowed: the key breaks the builder-key rules above; the error
// names which one. It is refused before any signature is verified.
var ErrKeyNotAllowed = errors.New("not an accepted builder key")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrKeyNotAllowed, fmt.Sprintf(format, args...))
}

// OpenPGP packet tags a key block may hold (RFC 9580, section 5).
const (
	tagSignature     = 2
	tagSecretKey     = 5
	tagPublicKey     = 6
	tagSecretSubkey  = 7
	tagMarker        = 10
	tagTrust         = 12
	tagUserID        = 13
	tagPublicSubkey  = 14
	tagUserAttribute = 17
	tagPadding       = 21
)

// rawPacket is one packet of a key block: its tag, its body and the whole
// packet (header included).
type rawPacket struct {
	tag       int
	body, all []byte
}

// nextRawPacket splits the first packet off b. It accepts the old and new
// header formats with definite lengths only: partial and indeterminate
// lengths are for data packets, never for keys.
func nextRawPacket(b []byte) (rawPacket, []byte, error) {
	if len(b) == 0 {
		return rawPacket{}, nil, io.EOF
	}
	h := b[0]
	if h&0x80 == 0 {
		return rawPacket{}, nil, refuse("not an OpenPGP packet (byte %#02x)", h)
	}
	var tag, hdr, n int
	if h&0x40 != 0 { // new format
		tag = int(h & 0x3f)
		if len(b) < 2 {
			return rawPacket{}, nil, refuse("truncated packet header")
		}
		switch l := b[1]; {
		case l < 192:
			hdr, n = 2, int(l)
		case l < 224:
			if len(b) < 3 {
				return rawPacket{}, nil, refuse("truncated packet header")
			}
			hdr, n = 3, (int(l)-192)<<8+int(b[2])+192
		case l == 255:
			if len(b) < 6 {
				return rawPacket{}, nil, refuse("truncated packet header")
			}
			hdr = 6
			m := uint32(b[2])<<24 | uint32(b[3])<<16 | uint32(b[4])<<8 | uint32(b[5])
			if m > maxKeyBytes {
				return rawPacket{}, nil, refuse("packet of %d bytes", m)
			}
			n = int(m)
		default:
			return rawPacket{}, nil, refuse("packet with a partial body length (tag %d)", tag)
		}
	} else {
		tag = int(h&0x3f) >> 2
		switch h & 3 {
		case 0:
			hdr = 2
		case 1:
			hdr = 3
		case 2:
			hdr = 5
		default:
			return rawPacket{}, nil, refuse("packet with an indeterminate length (tag %d)", tag)
		}
		if len(b) < hdr {
			return rawPacket{}, nil, refuse("truncated packet header")
		}
		var m uint32
		for _, c := range b[1:hdr] {
			m = m<<8 | uint32(c)
		}
		if m > maxKeyBytes {
			return rawPacket{}, nil, refuse("packet of %d bytes", m)
		}
		n = int(m)
	}
	if len(b) < hdr+n {
		return rawPacket{}, nil, refuse("truncated packet (tag %d: %d bytes announced, %d present)", tag, n, len(b)-hdr)
	}
	return rawPacket{tag: tag, body: b[hdr : hdr+n], all: b[:hdr+n]}, b[hdr+n:], nil
}

// Curve OIDs (RFC 9580, section 9.2), to name what is refused.
var curveNames = map[string]string{
	"\x2a\x86\x48\xce\x3d\x03\x01\x07":         "NIST P-256",
	"\x2b\x81\x04\x00\x22":                     "NIST P-384",
	"\x2b\x81\x04\x00\x23":                     "NIST P-521",
	"\x2b\x81\x04\x00\x0a":                     "secp256k1",
	"\x2b\x24\x03\x03\x02\x08\x01\x01\x07":     "brainpoolP256r1",
	"\x2b\x24\x03\x03\x02\x08\x01\x01\x0b":     "brainpoolP384r1",
	"\x2b\x24\x03\x03\x02\x08\x01\x01\x0d":     "brainpoolP512r1",
	"\x2b\x06\x01\x04\x01\xda\x47\x0f\x01":     "Ed25519",
	"\x2b\x06\x01\x04\x01\x97\x55\x01\x05\x01": "Curve25519",
	"\x2b\x65\x71":                             "Ed448",
	"\x2b\x65\x6f":                             "X448",
}

const (
	oidEd25519    = "\x2b\x06\x01\x04\x01\xda\x47\x0f\x01"
	oidCurve25519 = "\x2b\x06\x01\x04\x01\x97\x55\x01\x05\x01"
)

var algoNames = map[byte]string{
	1: "RSA", 2: "RSA (encrypt-only)", 3: "RSA (sign-only)",
	16: "ElGamal", 17: "DSA", 18: "ECDH", 19: "ECDSA", 20: "ElGamal (sign)", 21: "Diffie-Hellman",
	22: "EdDSA", 25: "X25519", 26: "X448", 27: "Ed25519", 28: "Ed448",
	30: "ML-DSA-65+Ed25519", 31: "ML-DSA-87+Ed448", 32: "SLH-DSA-SHAKE-128s", 33: "SLH-DSA-SHAKE-128f",
	34: "SLH-DSA-SHAKE-256s", 35: "ML-KEM-768+X25519", 36: "ML-KEM-1024+X448",
}

func algoName(a byte) string {
	if n, ok := algoNames[a]; ok {
		return fmt.Sprintf("%s (algorithm %d)", n, a)
	}
	return fmt.Sprintf("algorithm %d", a)
}

// readMPI reads one multiprecision integer (two-octet bit count, then
// the value) and returns its value and the rest.
func readMPI(b []byte) ([]byte, []byte, bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := (int(b[0])<<8 | int(b[1]) + 7) / 8
	if len(b) < 2+n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}

// readOID reads a one-octet length and the OID.
func readOID(b []byte) (string, bool) {
	if len(b) < 1 || int(b[0]) == 0 || int(b[0]) == 0xff || len(b) < 1+int(b[0]) {
		return "", false
	}
	return string(b[1 : 1+int(b[0])]), true
}

// checkKeyAlgorithm applies the algorithm allow-list to the body of a
// public-key or public-subkey packet, reading only its fixed fields, and
// returns the weight of one verification by that key (MaxKeyVerifyCost).
func checkKeyAlgorithm(body []byte, subkey bool) (int, error) {
	what := "primary key"
	if subkey {
		what = "subkey"
	}
	if len(body) < 6 {
		return 0, refuse("truncated %s packet", what)
	}
	var fields []byte
	switch v := body[0]; v {
	case 4:
		fields = body[6:]
	case 6:
		if len(body) < 10 {
			return 0, refuse("truncated %s packet", what)
		}
		fields = body[10:]
	default:
		return 0, refuse("%s of version %d (only v4 and v6 keys are accepted)", what, v)
	}
	algo := body[5]
	notAllowed := func(detail string) error {
		return refuse("%s is %s%s; builder keys must be %s", what, algoName(algo), detail, BuilderKeyAlgorithms)
	}
	switch algo {
	case 1: // RSA
		n, rest, ok := readMPI(fields)
		if !ok {
			return 0, refuse("truncated RSA %s", what)
		}
		e, _, ok := readMPI(rest)
		if !ok {
			return 0, refuse("truncated RSA %s", what)
		}
		bits := new(big.Int).SetBytes(n).BitLen()
		if bits < minRSABits || bits > maxRSABits {
			return 0, notAllowed(fmt.Sprintf(" of %d bits", bits))
		}
		ev := new(big.Int).SetBytes(e)
		if ev.Bit(0) == 0 || ev.Cmp(big.NewInt(3)) < 0 || ev.Cmp(big.NewInt(maxRSAExponent)) > 0 {
			return 0, refuse("RSA %s with public exponent %s (want an odd exponent from 3 to %d)", what, ev, maxRSAExponent)
		}
		switch {
		case bits <= 2048:
			return 1, nil
		case bits <= 3072:
			return 4, nil
		}
		return 7, nil
	case 27: // Ed25519
		return 1, nil
	case 25: // X25519
		if subkey {
			return 1, nil
		}
		return 0, notAllowed(" (an encryption algorithm)")
	case 18, 19, 22: // ECDH, ECDSA, legacy EdDSA: an OID names the curve
		oid, ok := readOID(fields)
		if !ok {
			return 0, refuse("%s: %s with a malformed curve OID", what, algoName(algo))
		}
		switch {
		case algo == 22 && oid == oidEd25519:
			return 1, nil
		case algo == 18 && oid == oidCurve25519 && subkey:
			return 1, nil
		}
		curve, known := curveNames[oid]
		if !known {
			curve = "OID " + hex.EncodeToString([]byte(oid))
		}
		return 0, notAllowed(" on " + curve)
	default:
		return 0, notAllowed("")
	}
}

// checkKeyCost applies the builder-key rules to a binary key block
// without any cryptography: one primary key, then user IDs, subkeys and
// signatures within the bounds above, each key of an allowed algorithm,
// no secret-key packet, no packet repeated byte for byte, no packet of a
// kind a key does not hold. Signature subpackets are scanned to tell
// self-signatures, which ReadKeyRing verifies, from third-party
// certifications, which it does not. It follows ReadEntity's reading of
// a key (openpgp/keys.go, go-crypto v1.5.2) and counts conservatively
// where they could differ. Only the primary key packet goes through
// go-crypto's parser (for its fingerprint and key ID), after its
// algorithm is checked.
func checkKeyCost(b []byte) error {
	_, err := keyCostOf(b)
	return err
}

// keyCost is what checkKeyCost counted in a key.
type keyCost struct {
	UserIDs, Subkeys, Signatures int
	Verifications, Weight        int // signatures ReadEntity verifies, and their weight
	Revocations                  int
}

func keyCostOf(b []byte) (keyCost, error) {
	var (
		k           keyCost
		primary     *packet.PublicKey
		seen        = make(map[uint64][]byte, 32) // packet hash → packet, to refuse repeats
		ctx         int                           // tag of the packet the next signatures follow
		primaryCost int                           // weight of a verification by the primary key
		subkeyCost  int                           // and by the last subkey (back-signatures)
	)
	for i := 0; ; i++ {
		p, rest, err := nextRawPacket(b)
		if err == io.EOF {
			break
		}
		if err != nil {
			return k, err
		}
		b = rest
		switch p.tag {
		case tagSignature, tagUserID, tagUserAttribute, tagPublicSubkey:
			h := maphash.Bytes(packetSeed, p.all)
			if prev, ok := seen[h]; ok && bytes.Equal(prev, p.all) {
				return k, refuse("packet (tag %d, %d bytes) repeated", p.tag, len(p.body))
			}
			seen[h] = p.all
		}
		if i == 0 && p.tag != tagPublicKey {
			if p.tag == tagSecretKey {
				return k, refuse("secret key material: give the public key (gpg --export, not --export-secret-keys)")
			}
			return k, refuse("first packet (tag %d) is not a public key", p.tag)
		}
		switch p.tag {
		case tagMarker, tagTrust:
			continue // skipped by go-crypto's reader, context unchanged (a trust packet between signatures must not hide them)
		case tagPadding:
			ctx = p.tag
			continue
		case tagSecretKey, tagSecretSubkey:
			return k, refuse("secret key material: give the public key (gpg --export, not --export-secret-keys)")
		case tagPublicKey:
			if i != 0 {
				return k, refuse("a second primary key: want exactly one key")
			}
			if primaryCost, err = checkKeyAlgorithm(p.body, false); err != nil {
				return k, err
			}
			pk, err := packet.Read(bytes.NewReader(p.all))
			if err != nil {
				return k, fmt.Errorf("malformed primary key: %w", err)
			}
			var ok bool
			if primary, ok = pk.(*packet.PublicKey); !ok {
				return k, refuse("first packet is not a public key")
			}
		case tagPublicSubkey:
			if k.Subkeys++; k.Subkeys > MaxKeySubkeys {
				return k, refuse("more than %d subkeys", MaxKeySubkeys)
			}
			cost, err := checkKeyAlgorithm(p.body, true)
			if err != nil {
				return k, err
			}
			// The costliest subkey so far: a subkey go-crypto skips (one it
			// cannot use) leaves the bindings that follow to the one before.
			subkeyCost = max(subkeyCost, cost)
		case tagUserID, tagUserAttribute:
			if k.UserIDs++; k.UserIDs > MaxKeyUserIDs {
				return k, refuse("more than %d user IDs", MaxKeyUserIDs)
			}
			if p.tag == tagUserID && len(p.body) > MaxUserIDBytes {
				return k, refuse("user ID of %d bytes (at most %d)", len(p.body), MaxUserIDBytes)
			}
		case tagSignature:
			if k.Signatures++; k.Signatures > MaxKeySignatures {
				return k, refuse("more than %d signatures", MaxKeySignatures)
			}
			byPrimary, bySubkey, revocation, err := verifiedAtParse(p, primary, ctx)
			if err != nil {
				return k, err
			}
			if revocation {
				if k.Revocations++; k.Revocations > MaxRevocations {
					return k, refuse("more than %d key revocations", MaxRevocations)
				}
			}
			k.Verifications += byPrimary + bySubkey
			k.Weight += byPrimary*primaryCost + bySubkey*subkeyCost
			// Room for the reserved revocations the key does not carry yet.
			room := max(ReservedRevocations-k.Revocations, 0)
			if k.Verifications+room > MaxKeyVerifications {
				return k, refuse("more than %d self-signatures, subkey bindings and revocations to verify (%d kept for revocations)", MaxKeyVerifications, ReservedRevocations)
			}
			if k.Weight+room*primaryCost > MaxKeyVerifyCost {
				return k, refuse("self-signatures, subkey bindings and revocations to verify weigh more than %d Ed25519 verifications (%d revocations kept; one RSA-4096 verification weighs 7, RSA-3072 4)", MaxKeyVerifyCost, ReservedRevocations)
			}
		default:
			return k, refuse("packet of type %d does not belong in a public key", p.tag)
		}
		if p.tag != tagSignature {
			ctx = p.tag
		}
	}
	if primary == nil {
		return k, refuse("no key")
	}
	return k, nil
}

// packetSeed seeds the hashes keyCostOf finds repeated packets with.
var packetSeed = maphash.MakeSeed()

// verifiedAtParse reports how many signature verifications ReadEntity
// spends on signature packet p, which follows a packet with tag ctx: by
// the primary key, by the subkey it follows (a back-signature), and
// whether it is a key revocation. It reads the packet's fixed fields and
// subpacket headers itself (go-crypto's parser allocates kilobytes per
// signature) and errs on the side of counting: a signature counts as a
// self-signature when any issuer subpacket, hashed or not, names the
// primary key (go-crypto's CheckKeyIdOrFingerprint needs one of them) or
// when it names no issuer.
func verifiedAtParse(p rawPacket, primary *packet.PublicKey, ctx int) (byPrimary, bySubkey int, revocation bool, err error) {
	sigType, self, embedded, err := scanSignature(p.body, primary)
	if err != nil {
		return 0, 0, false, err
	}
	switch ctx {
	case tagPublicSubkey: // every signature after a subkey is verified
		if embedded {
			return 1, 1, false, nil // and the back-signature, by the subkey
		}
		return 1, 0, false, nil
	case tagUserID:
		if self {
			return 1, 0, false, nil
		}
		return 0, 0, false, nil
	default: // after the primary key, a user attribute, a trust or padding packet
		switch {
		case sigType == packet.SigTypeKeyRevocation:
			return 1, 0, true, nil // verified whoever issued it
		case sigType == packet.SigTypeDirectSignature && self:
			return 1, 0, false, nil
		}
		return 0, 0, false, nil
	}
}

// Signature subpacket types (RFC 9580, section 5.2.3.7).
const (
	subpacketIssuerKeyID       = 16
	subpacketEmbeddedSignature = 32
	subpacketIssuerFingerprint = 33
)

// scanSignature reads a v4 or v6 signature packet body: its type, whether
// an issuer subpacket names primary (or none names any key), and whether
// it embeds a signature. Other versions are refused: go-crypto skips v3
// signatures, and a builder key has none.
func scanSignature(body []byte, primary *packet.PublicKey) (sigType packet.SignatureType, self, embedded bool, err error) {
	if len(body) < 4 {
		return 0, false, false, refuse("truncated signature packet")
	}
	lenSize := 2
	switch body[0] {
	case 4:
	case 6:
		lenSize = 4
	default:
		return 0, false, false, refuse("signature of version %d (only v4 and v6 signatures are accepted)", body[0])
	}
	sigType = packet.SignatureType(body[1])
	rest := body[4:]
	var issuer, named bool
	var keyIDs, fprIDs []uint64       // the key IDs issuer subpackets name, directly and by fingerprint
	for area := 0; area < 2; area++ { // hashed, then unhashed subpackets
		if len(rest) < lenSize {
			return 0, false, false, refuse("truncated signature packet")
		}
		n := 0
		for _, c := range rest[:lenSize] {
			n = n<<8 | int(c)
		}
		rest = rest[lenSize:]
		if n > len(rest) {
			return 0, false, false, refuse("signature subpackets overrun the packet")
		}
		subs := rest[:n]
		rest = rest[n:]
		for len(subs) > 0 {
			var l, hdr int
			switch c := int(subs[0]); {
			case c < 192:
				l, hdr = c, 1
			case c < 255:
				if len(subs) < 2 {
					return 0, false, false, refuse("truncated signature subpacket")
				}
				l, hdr = (c-192)<<8+int(subs[1])+192, 2
			default:
				if len(subs) < 5 {
					return 0, false, false, refuse("truncated signature subpacket")
				}
				l, hdr = int(subs[1])<<24|int(subs[2])<<16|int(subs[3])<<8|int(subs[4]), 5
			}
			if l < 1 || l > len(subs)-hdr {
				return 0, false, false, refuse("malformed signature subpacket")
			}
			typ, data := subs[hdr]&0x7f, subs[hdr+1:hdr+l]
			subs = subs[hdr+l:]
			switch typ {
			case subpacketIssuerKeyID:
				issuer = true
				named = named || (len(data) == 8 && binary.BigEndian.Uint64(data) == primary.KeyId)
				if len(data) == 8 {
					keyIDs = append(keyIDs, binary.BigEndian.Uint64(data))
				}
			case subpacketIssuerFingerprint:
				issuer = true
				named = named || namesKey(data, primary)
				if id, ok := fingerprintKeyID(data); ok {
					fprIDs = append(fprIDs, id)
				}
			case subpacketEmbeddedSignature:
				embedded = true
			}
		}
	}
	// Issuer subpackets that disagree name nobody honestly: such a
	// signature could be counted as the key's own (filling its room for
	// self-signatures) while go-crypto and MergeKey read another issuer.
	if ids := append(keyIDs, fprIDs...); len(ids) > 1 {
		for _, id := range ids[1:] {
			if id != ids[0] {
				return 0, false, false, refuse("signature whose issuer subpackets name different keys")
			}
		}
	}
	return sigType, named || !issuer, embedded, nil
}

// fingerprintKeyID is the key ID an issuer fingerprint subpacket (version
// octet and fingerprint) names: the low 64 bits of a v4 fingerprint, the
// high 64 bits of a v6 one.
func fingerprintKeyID(data []byte) (uint64, bool) {
	if len(data) < 2 {
		return 0, false
	}
	switch fp := data[1:]; len(fp) {
	case 20:
		return binary.BigEndian.Uint64(fp[12:]), true
	case 32:
		return binary.BigEndian.Uint64(fp[:8]), true
	}
	return 0, false
}

// namesKey reports whether an issuer fingerprint subpacket (version octet
// and fingerprint) could name primary: its fingerprint, or a fingerprint
// from which go-crypto would derive primary's key ID.
func namesKey(data []byte, primary *packet.PublicKey) bool {
	if len(data) < 2 {
		return false
	}
	fp := data[1:]
	var id []byte
	switch len(fp) {
	case 20:
		id = fp[12:]
	case 32:
		id = fp[:8]
	}
	return bytes.Equal(fp, primary.Fingerprint) || (id != nil && binary.BigEndian.Uint64(id) == primary.KeyId)
}

// refusedKeys remembers the last refusals by go-crypto of keys within the
// rules (a bad self-signature found after verifying the others), by
// SHA-256 of the binary key, so that hostile bytes sent again cost one
// hash instead of up to MaxKeyVerifyCost verifications. A refusal is a
// function of the bytes alone (no clock, no keyring). Successes are not
// kept: callers change the entities they get (MergeKey), so every
// success parses afresh.
var refusedKeys = newRefusalCache(4096)

// refusalCache is a bounded LRU map from key hash to refusal (a small
// container/list LRU, so that attest needs no new module).
type refusalCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *refusal, most recently used first
	m   map[[32]byte]*list.Element
}

type refusal struct {
	h   [32]byte
	err error
}

func newRefusalCache(max int) *refusalCache {
	return &refusalCache{max: max, ll: list.New(), m: make(map[[32]byte]*list.Element)}
}

func (c *refusalCache) get(h [32]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[h]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*refusal).err
	}
	return nil
}

func (c *refusalCache) add(h [32]byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[h]; ok {
		c.ll.MoveToFront(el)
		return
	}
	c.m[h] = c.ll.PushFront(&refusal{h: h, err: err})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*refusal).h)
	}
}

func (c *refusalCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
