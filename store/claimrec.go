package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/lebowski-dist/lebowski/attest"
)

// `claims` values. The canonical envelope is JSON with the payload in
// base64 and the signature armored: ~1.3 KiB, a third of it encoding
// overhead. The compact form keeps the payload bytes and the binary
// signature and rebuilds the exact canonical envelope on read. It is used
// only when that rebuild reproduces the raw bytes at write time, so reads
// always return exactly what was verified (the claim ID is checked again).
const (
	claimVerbatim = 0 // [0][canonical envelope]
	claimCompact  = 1 // [1][uvarint len(payload)][payload][binary signature]
)

func encodeClaimValue(env *attest.Envelope, raw []byte) []byte {
	verbatim := append([]byte{claimVerbatim}, raw...)
	if env == nil || env.PayloadType != attest.PayloadTypeV1 {
		return verbatim
	}
	blk, err := armor.Decode(strings.NewReader(env.Signature))
	if err != nil || blk.Type != openpgp.SignatureType || len(blk.Header) != 0 {
		return verbatim
	}
	sig, err := io.ReadAll(blk.Body)
	if err != nil {
		return verbatim
	}
	v := binary.AppendUvarint([]byte{claimCompact}, uint64(len(env.Payload)))
	v = append(append(v, env.Payload...), sig...)
	if got, _, err := decodeClaimValue(v); err != nil || !bytes.Equal(got, raw) {
		return verbatim
	}
	return v
}

// decodeClaimValue returns the canonical envelope bytes and the envelope.
func decodeClaimValue(v []byte) ([]byte, *attest.Envelope, error) {
	if len(v) == 0 {
		return nil, nil, fmt.Errorf("%w: empty claim record", ErrCorrupt)
	}
	switch v[0] {
	case claimVerbatim:
		raw := bytes.Clone(v[1:])
		env, err := attest.DecodeEnvelope(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return raw, env, nil
	case claimCompact:
		n, k := binary.Uvarint(v[1:])
		if k <= 0 || n > uint64(len(v)-1-k) {
			return nil, nil, fmt.Errorf("%w: compact claim record: bad payload length", ErrCorrupt)
		}
		payload := bytes.Clone(v[1+k : 1+k+int(n)])
		var sig strings.Builder
		w, err := armor.Encode(&sig, openpgp.SignatureType, nil)
		if err == nil {
			_, err = w.Write(v[1+k+int(n):])
		}
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: compact claim record: %v", ErrCorrupt, err)
		}
		env := &attest.Envelope{PayloadType: attest.PayloadTypeV1, Payload: payload, Signature: sig.String()}
		return canonicalEnvelope(env), env, nil
	}
	return nil, nil, fmt.Errorf("%w: claim record tag %d", ErrCorrupt, v[0])
}

// canonicalEnvelope writes what attest's canonical JSON gives for an
// envelope without key (keys sorted: payload, payload_type, signature; no
// HTML escaping), without its generic re-encoding pass. encodeClaimValue
// checks the result against the verified bytes before relying on it.
func canonicalEnvelope(env *attest.Envelope) []byte {
	var b bytes.Buffer
	b.Grow(len(env.Payload)*4/3 + len(env.Signature) + 128)
	b.WriteString(`{"payload":"`)
	b64 := base64.StdEncoding
	buf := make([]byte, b64.EncodedLen(len(env.Payload)))
	b64.Encode(buf, env.Payload)
	b.Write(buf)
	b.WriteString(`","payload_type":`)
	writeJSONString(&b, env.PayloadType)
	b.WriteString(`,"signature":`)
	writeJSONString(&b, env.Signature)
	b.WriteByte('}')
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	e := json.NewEncoder(b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s)         // a string always encodes
	b.Truncate(b.Len() - 1) // Encode appends a newline
}
