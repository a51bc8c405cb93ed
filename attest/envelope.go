package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
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
func (e *Envelope) Encode() ([]byte, error) { return canonicalJSON(e) }

// WithoutKey returns a copy of the envelope with the transport-only Key
// field dropped: the form that is stored and hashed into the claim ID.
func (e *Envelope) WithoutKey() *Envelope {
	c := *e
	c.Key = nil
	return &c
}

// ClaimID is the CIDv1 (raw codec, sha2-256) of the canonical envelope
// without its Key (the key is a transport hint, not part of the claim).
func ClaimID(canonical []byte) string {
	sum, err := mh.Sum(canonical, mh.SHA2_256, -1)
	if err != nil {
		panic(err) // sha2-256 is always available
	}
	return cid.NewCidV1(cid.Raw, sum).String()
}

// DecodeEnvelope parses an encoded envelope strictly: size limit, no
// unknown fields, no trailing data.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, bad("decode envelope", fmt.Errorf("%w: %d bytes (max %d)", ErrOversize, len(b), MaxEnvelopeSize))
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
	if e.PayloadType != PayloadTypeV1 {
		return nil, bad("decode envelope", fmt.Errorf("unknown payload_type %q (want %q)", e.PayloadType, PayloadTypeV1))
	}
	if len(e.Payload) == 0 || e.Signature == "" {
		return nil, bad("decode envelope", errors.New("payload or signature missing"))
	}
	return &e, nil
}

// DecodeStatement parses a payload strictly and requires it to be in
// canonical form, so that one statement has exactly one encoding.
func DecodeStatement(payload []byte) (*Statement, error) {
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
	payload, err := st.Canonical()
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	var sig strings.Builder
	if err := openpgp.ArmoredDetachSign(&sig, id.Entity, bytes.NewReader(payload), pgpConfig()); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	env := &Envelope{PayloadType: PayloadTypeV1, Payload: payload, Signature: sig.String(), Key: id.PublicKey()}
	raw, err := env.WithoutKey().Encode()
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return &Claim{ID: ClaimID(raw), Raw: raw, Envelope: env, Statement: &st, Signer: id.Entity}, nil
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
	env, err := DecodeEnvelope(b)
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
		e, err := ParsePublicKey(env.Key)
		if err != nil {
			return nil, bad("verify: embedded key", err)
		}
		if Fingerprint(e) != st.Builder {
			return nil, bad("verify", fmt.Errorf("%w: embedded key %s is not the builder %s", ErrInvalidSignature, Fingerprint(e), st.Builder))
		}
		signer = e
	}
	if err := checkSignature(signer, env.Payload, env.Signature, opt.Now); err != nil {
		return nil, bad("verify", err)
	}
	raw, err := env.WithoutKey().Encode()
	if err != nil {
		return nil, bad("verify", err)
	}
	return &Claim{ID: ClaimID(raw), Raw: raw, Envelope: env, Statement: st, Signer: signer}, nil
}

func checkSignature(signer *openpgp.Entity, payload []byte, armored string, now time.Time) error {
	cfg := pgpConfig()
	cfg.Time = func() time.Time { return now }
	got, err := openpgp.CheckArmoredDetachedSignature(openpgp.EntityList{signer}, bytes.NewReader(payload), strings.NewReader(armored), cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSignature, err)
	}
	if Fingerprint(got) != Fingerprint(signer) {
		return fmt.Errorf("%w: signed by %s, not %s", ErrInvalidSignature, Fingerprint(got), Fingerprint(signer))
	}
	return nil
}

// Wire is the encoding sent to peers: the canonical envelope including the
// signer's public key when the claim carries it.
func (c *Claim) Wire() ([]byte, error) { return c.Envelope.Encode() }
