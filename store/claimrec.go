package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

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

func encodeClaimValue(raw []byte) []byte {
	payload, sig, ok := attest.SplitEnvelope(raw)
	if !ok {
		return append([]byte{claimVerbatim}, raw...)
	}
	if _, again := attest.JoinEnvelope(payload, sig); !bytes.Equal(again, raw) {
		return append([]byte{claimVerbatim}, raw...)
	}
	v := append(make([]byte, 0, 11+len(payload)+len(sig)), claimCompact)
	v = binary.AppendUvarint(v, uint64(len(payload)))
	return append(append(v, payload...), sig...)
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
		env, raw := attest.JoinEnvelope(payload, v[1+k+int(n):])
		return raw, env, nil
	}
	return nil, nil, fmt.Errorf("%w: claim record tag %d", ErrCorrupt, v[0])
}
