package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// PayloadTypeV1 is the media type of a v1 statement inside an envelope.
const PayloadTypeV1 = "application/vnd.lebowski.rebuild.v1+json"

// Size limits (documented in docs/ATTESTATION.md).
const (
	// MaxEnvelopeSize bounds an encoded envelope: a statement with
	// MaxArtifacts artifacts, the signature and the embedded public key fit
	// well below it, and it stays far under gossipsub's 1 MiB message limit.
	MaxEnvelopeSize = 64 << 10
	// DefaultSkew is how far in the future a timestamp may be.
	DefaultSkew = 10 * time.Minute
)

// Errors returned by Decode and Verify. Every bad-input error unwraps to
// ErrInvalid so callers can map it to "reject" / exit 2.
var (
	ErrInvalid          = errors.New("invalid attestation")
	ErrInvalidSignature = errors.New("invalid signature")
	ErrUnknownKey       = errors.New("unknown builder key")
	ErrOversize         = errors.New("attestation too large")
)

// InputError is a bad-input error: it unwraps both to ErrInvalid and to the
// specific cause.
type InputError struct {
	Op  string
	Err error
}

func (e *InputError) Error() string { return e.Op + ": " + e.Err.Error() }

// Unwrap returns the cause and ErrInvalid.
func (e *InputError) Unwrap() []error { return []error{e.Err, ErrInvalid} }

func bad(op string, err error) error { return &InputError{Op: op, Err: err} }

// Envelope is a signed claim as stored and gossiped. Payload is the
// canonical statement; Signature is an armored detached OpenPGP signature
// over exactly those bytes (so `gpg --verify sig.asc payload.json` works);
// Key optionally carries the signer's public key (binary, base64 in JSON)
// so that nodes can verify claims of builders they have not met yet.
type Envelope struct {
	PayloadType string `json:"payload_type"`
	Payload     []byte `json:"payload"`
	Signature   string `json:"signature"`
	Key         []byte `json:"key,omitempty"`
}

// Encode returns the canonical encoding of the envelope.
func (e *Envelope) Encode() ([]byte, error) { return canonicalEnvelope(e) }

// WithoutKey returns a copy of the envelope with the transport-only Key
// field dropped: the form that is stored and hashed into the claim ID.
func (e *Envelope) WithoutKey() *Envelope {
	c := *e
	c.Key = nil
	return &c
}

// ClaimID is the CIDv1 (raw codec, sha2-256) of the canonical envelope
// without its Key (the key is a transport hint, not part of the claim).
func ClaimID(canonical []byte) string { return vocab.CID(canonical) }

// DecodeEnvelope parses an encoded envelope strictly: size limit, no
// unknown fields, no trailing data.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, bad("decode envelope", fmt.Errorf("%w: %d bytes (max %d)", ErrOversize, len(b), MaxEnvelopeSize))
	}
	e, _, err := decodeEnvelope(b)
	return e, err
}

// decodeEnvelope is DecodeEnvelope that also returns the canonical
// encoding without the key when the input was canonical (else nil).
func decodeEnvelope(b []byte) (*Envelope, []byte, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, nil, bad("decode envelope", fmt.Errorf("%w: %d bytes (max %d)", ErrOversize, len(b), MaxEnvelopeSize))
	}
	e, raw, ok := parseCanonicalEnvelope(b)
	if !ok {
		var err error
		if e, err = decodeEnvelopeJSON(b); err != nil {
			return nil, nil, err
		}
	}
	if err := checkEnvelope(e); err != nil {
		return nil, nil, err
	}
	return e, raw, nil
}

func decodeEnvelopeJSON(b []byte) (*Envelope, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, bad("decode envelope", errors.New("empty input"))
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var e Envelope
	if err := d.Decode(&e); err != nil {
		return nil, bad("decode envelope", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, bad("decode envelope", errors.New("trailing data after envelope"))
	}
	return &e, nil
}

func checkEnvelope(e *Envelope) error {
	if e.PayloadType != PayloadTypeV1 {
		return bad("decode envelope", fmt.Errorf("unknown payload_type %q (want %q)", e.PayloadType, PayloadTypeV1))
	}
	if len(e.Payload) == 0 || e.Signature == "" {
		return bad("decode envelope", errors.New("payload or signature missing"))
	}
	return nil
}

// DecodeStatement parses a payload strictly and requires it to be in
// canonical form, so that one statement has exactly one encoding.
func DecodeStatement(payload []byte) (*Statement, error) {
	if s, ok := parseCanonicalStatement(payload); ok {
		return s, nil
	}
	return decodeStatementJSON(payload)
}

func decodeStatementJSON(payload []byte) (*Statement, error) {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.DisallowUnknownFields()
	var s Statement
	if err := d.Decode(&s); err != nil {
		return nil, bad("decode statement", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, bad("decode statement", errors.New("trailing data after statement"))
	}
	canon, err := s.Canonical()
	if err != nil {
		return nil, bad("decode statement", err)
	}
	if !bytes.Equal(canon, payload) {
		return nil, bad("decode statement", errors.New("payload is not in canonical form"))
	}
	return &s, nil
}

// Claim is a verified claim.
type Claim struct {
	ID        string     // CID of Raw
	Raw       []byte     // canonical envelope bytes, without the embedded key
	Envelope  *Envelope  //
	Statement *Statement //
	// Signer is the verified signer's key (from the keyring or the envelope).
	Signer *openpgp.Entity
}

// Sign builds the canonical envelope for s, signed by id. s.Builder is set
// to id's fingerprint; the public key is embedded.
func Sign(id *Identity, s *Statement) (*Claim, error) {
	st := *s
	st.Builder = id.Fingerprint()
	st.Timestamp = st.Timestamp.UTC().Truncate(time.Second)
	if st.RecipeID == "" {
		st.RecipeID = st.Recipe().ID()
	}
	if err := st.Validate(time.Time{}, 0); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if !validUTF8(&st) {
		return nil, fmt.Errorf("sign: %w: a field is not valid UTF-8", ErrInvalidStatement)
	}
	payload, err := st.Canonical()
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	armored, err := detachSign(id, payload)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	env := &Envelope{PayloadType: PayloadTypeV1, Payload: payload, Signature: armored, Key: id.PublicKey()}
	raw, err := env.WithoutKey().Encode()
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return &Claim{ID: ClaimID(raw), Raw: raw, Envelope: env, Statement: &st, Signer: id.Entity}, nil
}

// detachSign is the one signature Sign and SignIntent make: a detached
// OpenPGP signature by id over payload, armored canonically.
func detachSign(id *Identity, payload []byte) (string, error) {
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, id.Entity, bytes.NewReader(payload), pgpConfig()); err != nil {
		return "", err
	}
	return armorSignature(sig.Bytes())
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	Now  time.Time     // default time.Now()
	Skew time.Duration // default DefaultSkew
	// RequireKnownKey rejects claims whose signer is not in the keyring
	// (the embedded key is then ignored).
	RequireKnownKey bool
}

// Verify decodes and checks an encoded envelope: size, strict schema,
// canonical payload, the OpenPGP signature by the key named in
// statement.builder (from keys, else the embedded key), field ranges and
// timestamp skew.
func Verify(b []byte, keys KeyLookup, opt VerifyOptions) (*Claim, error) {
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	if opt.Skew == 0 {
		opt.Skew = DefaultSkew
	}
	env, raw, err := decodeEnvelope(b)
	if err != nil {
		return nil, err
	}
	st, err := DecodeStatement(env.Payload)
	if err != nil {
		return nil, err
	}
	if err := st.Validate(opt.Now, opt.Skew); err != nil {
		return nil, bad("verify", err)
	}
	var signer *openpgp.Entity
	if keys != nil {
		signer = keys.Lookup(st.Builder)
	}
	if signer == nil {
		if opt.RequireKnownKey || len(env.Key) == 0 {
			return nil, bad("verify", fmt.Errorf("%w: %s (import it with `lebowski key import`)", ErrUnknownKey, st.Builder))
		}
		e, err := embeddedKeys.parse(env.Key)
		if err != nil {
			return nil, bad("verify: embedded key", err)
		}
		if Fingerprint(e) != st.Builder {
			return nil, bad("verify", fmt.Errorf("%w: embedded key %s is not the builder %s", ErrInvalidSignature, Fingerprint(e), st.Builder))
		}
		signer = e
	}
	if err := checkSignature(signer, env.Payload, env.Signature, opt.Now, opt.Skew); err != nil {
		return nil, bad("verify", err)
	}
	if raw == nil {
		if raw, err = env.WithoutKey().Encode(); err != nil {
			return nil, bad("verify", err)
		}
	}
	return &Claim{ID: ClaimID(raw), Raw: raw, Envelope: env, Statement: st, Signer: signer}, nil
}

// checkSignature verifies that armored is a canonical detached signature
// by signer over payload. now+skew is the verification time, so that a
// signature made by a builder whose clock runs a little ahead is accepted
// (the OpenPGP layer otherwise rejects any signature or key created after
// the verifier's "now").
func checkSignature(signer *openpgp.Entity, payload []byte, armored string, now time.Time, skew time.Duration) error {
	body, err := canonicalArmor(armored)
	if err != nil {
		return err
	}
	cfg := pgpConfig()
	at := now.Add(skew)
	cfg.Time = func() time.Time { return at }
	// Verify first and check the packet's form on what go-crypto parsed:
	// one parse per claim instead of two (issue 12). A non-canonical packet
	// that verifies is refused below all the same.
	sig, got, err := openpgp.VerifyDetachedSignature(openpgp.EntityList{signer}, bytes.NewReader(payload), bytes.NewReader(body), cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSignature, err)
	}
	if err := canonicalPacket(sig, body); err != nil {
		return err
	}
	// go-crypto does not check the 16-bit hash tag of v4 signatures (it is
	// outside the signed data, so it could be changed freely): check it
	// here, so that a changed tag is one more rejected variant.
	h, err := sig.PrepareVerify()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSignature, err)
	}
	h.Write(payload)
	if err := packet.VerifyHashTag(h, sig); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSignature, err)
	}
	if got != signer {
		return fmt.Errorf("%w: signed by %s, not %s", ErrInvalidSignature, Fingerprint(got), Fingerprint(signer))
	}
	return nil
}

// maxSignatureSize bounds the armored signature (an Ed25519 signature is
// about 230 bytes armored; RSA-4096 about 900).
const maxSignatureSize = 4 << 10

// armorSignature is the one armored form of a detached signature that
// Sign produces and Verify accepts: no armor headers, 64-column base64,
// CRC-24 line.
func armorSignature(body []byte) (string, error) {
	var b strings.Builder
	w, err := armor.Encode(&b, openpgp.SignatureType, nil)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(body); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Signatures must be canonical. An OpenPGP signature is malleable without
// the key: armor headers, line breaks, the CRC line, packet length
// encodings, MPI bit counts, extra signature packets and the unhashed
// subpacket area can all change while the signature stays valid. Each
// variant would be a different envelope and so a different claim ID for
// the same signed statement; requiring the one encoding Sign produces
// (canonicalArmor, canonicalPacket, the hash tag check) keeps one
// statement signature = one claim ID.

// canonicalArmor decodes the armor of a detached signature, accepting
// only the form armorSignature writes.
func canonicalArmor(armored string) ([]byte, error) {
	if len(armored) > maxSignatureSize {
		return nil, fmt.Errorf("%w: armored signature is %d bytes (max %d)", ErrInvalidSignature, len(armored), maxSignatureSize)
	}
	if body, ok := dearmorFast(armored); ok {
		return body, nil
	}
	return dearmor(armored)
}

// dearmor decodes an armored signature with go-crypto and requires it to
// be canonical; it names what is wrong where dearmorFast only says no.
func dearmor(armored string) ([]byte, error) {
	block, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("%w: armor: %v", ErrInvalidSignature, err)
	}
	if block.Type != openpgp.SignatureType {
		return nil, fmt.Errorf("%w: armor type %q, want %q", ErrInvalidSignature, block.Type, openpgp.SignatureType)
	}
	body, err := io.ReadAll(io.LimitReader(block.Body, maxSignatureSize))
	if err != nil {
		return nil, fmt.Errorf("%w: armor: %v", ErrInvalidSignature, err)
	}
	if again, err := armorSignature(body); err != nil || again != armored {
		return nil, fmt.Errorf("%w: signature armor is not in canonical form (headers, line breaks or checksum differ from what lebowski signs)", ErrInvalidSignature)
	}
	return body, nil
}

// canonicalPacket checks that sig, parsed from body, is the one encoding
// of a v4 binary signature: no other packet, minimal MPIs, new-format
// length, no unhashed subpackets.
func canonicalPacket(sig *packet.Signature, body []byte) error {
	if sig.Version != 4 {
		return fmt.Errorf("%w: signature version %d (only v4 is accepted)", ErrInvalidSignature, sig.Version)
	}
	if sig.SigType != packet.SigTypeBinary {
		return fmt.Errorf("%w: signature type %#x, want a binary document signature (0x00)", ErrInvalidSignature, uint8(sig.SigType))
	}
	for _, f := range []mpiField{sig.EdDSASigR, sig.EdDSASigS, sig.ECDSASigR, sig.ECDSASigS, sig.DSASigR, sig.DSASigS, sig.RSASignature} {
		if f != nil && !canonicalMPI(f) {
			return fmt.Errorf("%w: signature value is not minimally encoded", ErrInvalidSignature)
		}
	}
	var re bytes.Buffer
	if err := sig.Serialize(&re); err != nil || !bytes.Equal(re.Bytes(), body) {
		return fmt.Errorf("%w: signature packet is not in canonical form (one v4 signature packet, new-format length)", ErrInvalidSignature)
	}
	if unhashedLen(body) != 0 {
		return fmt.Errorf("%w: signature has unhashed subpackets (they are not covered by the signature)", ErrInvalidSignature)
	}
	return nil
}

// mpiField is the part of go-crypto's internal encoding.Field used here.
type mpiField interface {
	Bytes() []byte
	BitLength() uint16
}

// canonicalMPI reports whether f is minimally encoded: no leading zero
// byte and a bit count that matches the value.
func canonicalMPI(f mpiField) bool {
	b := f.Bytes()
	if len(b) == 0 {
		return f.BitLength() == 0
	}
	return b[0] != 0 && f.BitLength() == uint16(8*(len(b)-1)+bits.Len8(b[0]))
}

// unhashedLen returns the length of the unhashed subpacket area of a
// serialized v4 signature packet with a new-format header, or -1.
func unhashedLen(pkt []byte) int {
	if len(pkt) < 2 {
		return -1
	}
	hdr := 0
	switch l := pkt[1]; {
	case l < 192:
		hdr = 2
	case l < 224:
		hdr = 3
	case l == 255:
		hdr = 6
	default:
		return -1
	}
	b := pkt[min(hdr, len(pkt)):]
	if len(b) < 6 {
		return -1
	}
	h := int(b[4])<<8 | int(b[5])
	if len(b) < 8+h {
		return -1
	}
	return int(b[6+h])<<8 | int(b[7+h])
}

// Wire is the encoding sent to peers: the canonical envelope including the
// signer's public key when the claim carries it.
func (c *Claim) Wire() ([]byte, error) { return c.Envelope.Encode() }

// embeddedKeys caches parsed embedded public keys: parsing a key verifies
// its self-signatures (three Ed25519 verifications for a builder key),
// which would otherwise triple the cost of verifying a claim from a
// builder that is not in the keyring.
var embeddedKeys = &keyCache{max: 4096}

type keyCache struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte]*openpgp.Entity
}

func (c *keyCache) parse(b []byte) (*openpgp.Entity, error) {
	h := sha256.Sum256(b)
	c.mu.Lock()
	e := c.m[h]
	c.mu.Unlock()
	if e != nil {
		return e, nil
	}
	e, err := ParsePublicKey(b)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[[32]byte]*openpgp.Entity) // crude but bounded
	}
	c.m[h] = e
	c.mu.Unlock()
	return e, nil
}
