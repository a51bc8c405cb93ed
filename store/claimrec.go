package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

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
	claimPacked   = 2 // [2][uvarint len(packed)][packed statement][binary signature][4 CRC-32C of the rest]
)

// The packed form ends with a CRC-32C (Castagnoli) of the record, so a
// statement-only read (Store.Statements) can check the bytes without
// rebuilding and re-hashing the envelope.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
				v := append(make([]byte, 0, 7+len(packed)+len(sig)), claimPacked)
				v = binary.AppendUvarint(v, uint64(len(packed)))
				v = append(append(v, packed...), sig...)
				return binary.BigEndian.AppendUint32(v, crc32.Checksum(v, castagnoli))
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
		body, sig, err := splitClaimValue(v)
		if err != nil {
			return nil, nil, nil, err
		}
		var st *attest.Statement
		var payload []byte
		if v[0] == claimCompact {
			payload = bytes.Clone(body)
		} else {
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

// splitClaimValue returns the body (payload or packed statement) and the
// signature of a compact or packed record; a packed record's CRC is checked.
func splitClaimValue(v []byte) (body, sig []byte, err error) {
	if v[0] == claimPacked {
		if len(v) < 5 || crc32.Checksum(v[:len(v)-4], castagnoli) != binary.BigEndian.Uint32(v[len(v)-4:]) {
			return nil, nil, fmt.Errorf("%w: claim record: checksum mismatch", ErrCorrupt)
		}
		v = v[:len(v)-4]
	}
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || n > uint64(len(v)-1-k) {
		return nil, nil, fmt.Errorf("%w: claim record: bad length", ErrCorrupt)
	}
	return v[1+k : 1+k+int(n)], v[1+k+int(n):], nil
}

// packedStatement returns the statement of a packed record (checksum
// checked) without rebuilding its envelope; ok is false for other forms.
func packedStatement(v []byte) (st *attest.Statement, ok bool, err error) {
	if len(v) == 0 || v[0] != claimPacked {
		return nil, false, nil
	}
	body, _, err := splitClaimValue(v)
	if err != nil {
		return nil, true, err
	}
	if st, err = unpackStatement(body); err != nil {
		return nil, true, fmt.Errorf("%w: claim record: %v", ErrCorrupt, err)
	}
	return st, true, nil
}
