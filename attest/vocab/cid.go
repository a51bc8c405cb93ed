package vocab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Content identifiers. Everything Lebowski addresses by content — claims,
// opinions, blobs (buildinfo, logs, diffoscope reports, .debs, sources) —
// has a CIDv1 with the raw codec and a sha2-256 multihash, in its default
// string form (base32, "bafkrei…"). A CID is therefore derivable from a
// sha256 alone: an artifact's CID follows from the hash in a claim.

// CID returns the content identifier of data.
func CID(data []byte) string {
	sum := sha256.Sum256(data)
	return CIDOfSHA256(sum)
}

// CIDOfSHA256 returns the content identifier of content whose sha256 is
// sum.
func CIDOfSHA256(sum [32]byte) string {
	m, err := mh.Encode(sum[:], mh.SHA2_256)
	if err != nil {
		panic("vocab: multihash: " + err.Error()) // sha2-256 with 32 bytes always encodes
	}
	return cid.NewCidV1(cid.Raw, m).String()
}

// CIDOfSHA256Hex is CIDOfSHA256 for a hash in hex, as claims carry them.
func CIDOfSHA256Hex(h string) (string, error) {
	if !IsSHA256Hex(h) {
		return "", bad("sha256", h, "want 64 lower-case hex digits")
	}
	var sum [32]byte
	_, _ = hex.Decode(sum[:], []byte(h))
	return CIDOfSHA256(sum), nil
}

// MaxCIDLen bounds a CID string before it is decoded.
const MaxCIDLen = 128

// ParseCID decodes a content identifier and returns the sha256 it
// addresses. Only what CID makes is accepted (CIDv1, raw codec, sha2-256),
// so every content has exactly one name; CID(content) == s is then the
// check that bytes match.
func ParseCID(s string) ([32]byte, error) {
	var sum [32]byte
	if s == "" || len(s) > MaxCIDLen {
		return sum, bad("cid", s, fmt.Sprintf("want 1 to %d characters", MaxCIDLen))
	}
	c, err := cid.Decode(s)
	if err != nil {
		return sum, bad("cid", s, err.Error())
	}
	p := c.Prefix()
	if p.Version != 1 || p.Codec != cid.Raw || p.MhType != mh.SHA2_256 {
		return sum, bad("cid", s, "want a CIDv1 with the raw codec and a sha2-256 multihash")
	}
	d, err := mh.Decode(c.Hash())
	if err != nil || len(d.Digest) != 32 {
		return sum, bad("cid", s, "malformed sha2-256 multihash")
	}
	copy(sum[:], d.Digest)
	if CIDOfSHA256(sum) != s {
		return sum, bad("cid", s, "not in the canonical base32 form "+CIDOfSHA256(sum))
	}
	return sum, nil
}

// SHA256Hex is the lower-case hex sha256 of data.
func SHA256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
