package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// A packed statement is the claim payload without JSON: each field in a
// fixed order, hex digests and CIDs as their bytes. The payload (the
// signed bytes) is rebuilt with Statement.Canonical on read, so ingest
// packs a claim only when that rebuild gives back exactly the payload it
// verified (packClaim); every read re-hashes the rebuilt envelope against
// the claim ID anyway. A one-artifact claim's payload shrinks from ~700 to
// ~300 bytes.
//
// Strings are one of:
//
//	[0] uvarint n, n bytes   any string
//	[1] 32 bytes             64 lower-case hex digits (a sha256)
//	[2] n, n bytes           upper-case hex digits (a fingerprint), n ≤ 64
//	[3] 32 bytes             "sha256:" + 64 lower-case hex digits
//	[4] n, n bytes           a CID string that go-cid prints back the same
//
// A list of artifacts is uvarint count+1 (0: nil) then name, sha256 each.
const packedStatementV1 = 1

const (
	strRaw = iota
	strHex32
	strUpperHex
	strDigest
	strCID
)

func isHex(s string, lower bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case lower && c >= 'a' && c <= 'f':
		case !lower && c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return true
}

func appendStr(out []byte, s string) []byte {
	switch {
	case len(s) == 64 && isHex(s, true):
		b, _ := hex.DecodeString(s)
		return append(append(out, strHex32), b...)
	case len(s) > 0 && len(s) <= 64 && len(s)%2 == 0 && isHex(s, false):
		b, _ := hex.DecodeString(s)
		return append(append(out, strUpperHex, byte(len(b))), b...)
	case len(s) == 71 && strings.HasPrefix(s, "sha256:") && isHex(s[7:], true):
		b, _ := hex.DecodeString(s[7:])
		return append(append(out, strDigest), b...)
	case len(s) > 8 && len(s) < 128 && s[0] == 'b':
		if c, err := cid.Decode(s); err == nil && c.String() == s && c.ByteLen() < 256 {
			b := c.Bytes()
			return append(append(out, strCID, byte(len(b))), b...)
		}
	}
	out = append(out, strRaw)
	out = binary.AppendUvarint(out, uint64(len(s)))
	return append(out, s...)
}

var errPacked = errors.New("packed statement")

type unpacker struct {
	b   []byte
	err error
}

func (u *unpacker) fail(what string) {
	if u.err == nil {
		u.err = fmt.Errorf("%w: %s", errPacked, what)
	}
}

func (u *unpacker) take(n int) []byte {
	if u.err != nil || n < 0 || n > len(u.b) {
		u.fail("truncated")
		return nil
	}
	out := u.b[:n]
	u.b = u.b[n:]
	return out
}

func (u *unpacker) uvarint() uint64 {
	if u.err != nil {
		return 0
	}
	v, k := binary.Uvarint(u.b)
	if k <= 0 {
		u.fail("bad varint")
		return 0
	}
	u.b = u.b[k:]
	return v
}

func (u *unpacker) str() string {
	tag := u.take(1)
	if u.err != nil {
		return ""
	}
	switch tag[0] {
	case strRaw:
		n := u.uvarint()
		if n > uint64(len(u.b)) {
			u.fail("string length")
			return ""
		}
		return string(u.take(int(n)))
	case strHex32:
		return hex.EncodeToString(u.take(32))
	case strUpperHex:
		n := u.take(1)
		if u.err != nil {
			return ""
		}
		return strings.ToUpper(hex.EncodeToString(u.take(int(n[0]))))
	case strDigest:
		b := u.take(32)
		if u.err != nil {
			return ""
		}
		return "sha256:" + hex.EncodeToString(b)
	case strCID:
		n := u.take(1)
		if u.err != nil {
			return ""
		}
		c, err := cid.Cast(u.take(int(n[0])))
		if err != nil {
			u.fail("cid")
			return ""
		}
		return c.String()
	}
	u.fail("string tag")
	return ""
}

func appendArtifacts(out []byte, as []attest.Artifact) []byte {
	if as == nil {
		return append(out, 0)
	}
	out = binary.AppendUvarint(out, uint64(len(as))+1)
	for _, a := range as {
		out = appendStr(appendStr(out, a.Name), a.SHA256)
	}
	return out
}

func (u *unpacker) artifacts() []attest.Artifact {
	n := u.uvarint()
	if n == 0 || u.err != nil {
		return nil
	}
	if n-1 > uint64(len(u.b))/2 { // each artifact takes at least 2 bytes
		u.fail("artifact count")
		return nil
	}
	out := make([]attest.Artifact, n-1)
	for i := range out {
		out[i].Name = u.str()
		out[i].SHA256 = u.str()
	}
	return out
}

func packStatement(s *attest.Statement) []byte {
	out := make([]byte, 0, 512)
	out = append(out, packedStatementV1)
	for _, f := range []string{s.Type, s.Package, s.Version, s.DebianVersion, s.Suite, s.Arch,
		s.Opinion.Name, s.Opinion.CID, s.Opinion.Commit, string(s.Opinion.Purity),
		s.DebianSourceSHA256, s.ContainerDigest, s.RecipeID, string(s.Result)} {
		out = appendStr(out, f)
	}
	out = appendArtifacts(out, s.Artifacts)
	for _, f := range []string{s.BuildinfoCID, s.LogCID, s.LockCID, s.Reason} {
		out = appendStr(out, f)
	}
	out = appendArtifacts(out, s.SecondArtifacts)
	out = appendStr(out, s.DiffoscopeCID)
	out = appendArtifacts(out, s.Expected)
	out = appendStr(appendStr(out, s.Builder), s.PeerID)
	return binary.AppendVarint(out, s.Timestamp.Unix())
}

func unpackStatement(b []byte) (*attest.Statement, error) {
	if len(b) == 0 || b[0] != packedStatementV1 {
		return nil, fmt.Errorf("%w: unknown format", errPacked)
	}
	u := &unpacker{b: b[1:]}
	s := &attest.Statement{}
	var purity, result string
	for _, f := range []*string{&s.Type, &s.Package, &s.Version, &s.DebianVersion, &s.Suite, &s.Arch,
		&s.Opinion.Name, &s.Opinion.CID, &s.Opinion.Commit, &purity,
		&s.DebianSourceSHA256, &s.ContainerDigest, &s.RecipeID, &result} {
		*f = u.str()
	}
	s.Opinion.Purity, s.Result = vocab.Purity(purity), attest.Result(result)
	s.Artifacts = u.artifacts()
	for _, f := range []*string{&s.BuildinfoCID, &s.LogCID, &s.LockCID, &s.Reason} {
		*f = u.str()
	}
	s.SecondArtifacts = u.artifacts()
	s.DiffoscopeCID = u.str()
	s.Expected = u.artifacts()
	s.Builder, s.PeerID = u.str(), u.str()
	if u.err != nil {
		return nil, u.err
	}
	ts, k := binary.Varint(u.b)
	if k <= 0 || k != len(u.b) {
		return nil, fmt.Errorf("%w: timestamp", errPacked)
	}
	s.Timestamp = time.Unix(ts, 0).UTC()
	return s, nil
}
