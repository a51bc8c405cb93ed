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
// signature and rebuilds the exact canonical envelope on read; the packed
// form (schema 5, packstmt.go) also stores the payload as a packed
// statement and rebuilds it with Statement.Canonical. Each is used only
// when its rebuild reproduces the raw bytes at write time, so reads always
// return exactly what was verified (the claim ID is checked again).
const (
	claimVerbatim = 0 // [0][canonical envelope]
	claimCompact  = 1 // [1][uvarint len(payload)][payload][binary signature]
	claimPacked   = 2 // [2][uvarint len(packed)][packed statement][binary signature]
)

// encodeClaimValue encodes a claim's raw envelope; st, when not nil, is
// its verified statement (the packed form is tried only with it).
func encodeClaimValue(raw []byte, st *attest.Statement) []byte {
	payload, sig, ok := attest.SplitEnvelope(raw)
	if !ok {
		return append([]byte{claimVerbatim}, raw...)
	}
	if _, again := attest.JoinEnvelope(payload, sig); !bytes.Equal(again, raw) {
		return append([]byte{claimVerbatim}, raw...)
	}
	if st != nil {
		packed := packStatement(st)
		if back, err := unpackStatement(packed); err == nil {
			if p, err := back.Canonical(); err == nil && bytes.Equal(p, payload) {
				v := append(make([]byte, 0, 3+len(packed)+len(sig)), claimPacked)
				v = binary.AppendUvarint(v, uint64(len(packed)))
				return append(append(v, packed...), sig...)
			}
		}
	}
	v := append(make([]byte, 0, 11+len(payload)+len(sig)), claimCompact)
	v = binary.AppendUvarint(v, uint64(len(payload)))
	return append(append(v, payload...), sig...)
}

// decodeClaimValue returns the canonical envelope bytes, the envelope and,
// for the packed form, the statement (nil otherwise: parse the payload).
func decodeClaimValue(v []byte) ([]byte, *attest.Envelope, *attest.Statement, error) {
	if len(v) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: empty claim record", ErrCorrupt)
	}
	switch v[0] {
	case claimVerbatim:
		raw := bytes.Clone(v[1:])
		env, err := attest.DecodeEnvelope(raw)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return raw, env, nil, nil
	case claimCompact, claimPacked:
		n, k := binary.Uvarint(v[1:])
		if k <= 0 || n > uint64(len(v)-1-k) {
			return nil, nil, nil, fmt.Errorf("%w: claim record: bad length", ErrCorrupt)
		}
		body, sig := v[1+k:1+k+int(n)], v[1+k+int(n):]
		var st *attest.Statement
		var payload []byte
		if v[0] == claimCompact {
			payload = bytes.Clone(body)
		} else {
			var err error
			if st, err = unpackStatement(body); err != nil {
				return nil, nil, nil, fmt.Errorf("%w: claim record: %v", ErrCorrupt, err)
			}
			if payload, err = st.Canonical(); err != nil {
				return nil, nil, nil, fmt.Errorf("%w: claim record: %v", ErrCorrupt, err)
			}
		}
		env, raw := attest.JoinEnvelope(payload, bytes.Clone(sig))
		return raw, env, st, nil
	}
	return nil, nil, nil, fmt.Errorf("%w: claim record tag %d", ErrCorrupt, v[0])
}
