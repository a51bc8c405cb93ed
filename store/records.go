package store

import (
	"bytes"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unsafe"

	"github.com/ipfs/go-cid"

	"github.com/lebowski-dist/lebowski/attest"
)

// Binary keys keep the indexes small: a claim ID is stored as its CID bytes
// (36 bytes), a recipe ID as 32 raw bytes, a fingerprint as a length byte
// followed by its 20 (v4) or 32 (v6) bytes.

func claimKey(id string) ([]byte, error) {
	c, err := cid.Decode(id)
	if err != nil {
		return nil, fmt.Errorf("claim id %q: %w", id, err)
	}
	return c.Bytes(), nil
}

// cidV1RawSHA256 is the prefix of every claim ID's CID bytes: version 1,
// raw codec, sha2-256, 32 bytes.
var cidV1RawSHA256 = []byte{0x01, 0x55, 0x12, 0x20}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func claimIDString(k []byte) (string, error) {
	if len(k) == 36 && bytes.HasPrefix(k, cidV1RawSHA256) {
		// fast path, same result as cid.Cast(k).String(): "b" + base32
		var buf [1 + 58]byte
		buf[0] = 'b'
		b32.Encode(buf[1:], k)
		return string(buf[:]), nil
	}
	c, err := cid.Cast(k)
	if err != nil {
		return "", fmt.Errorf("%w: claim key %x: %v", ErrCorrupt, k, err)
	}
	return c.String(), nil
}

func recipeKey(id string) ([]byte, error) {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("recipe id %q is not 64 hex digits", id)
	}
	return b, nil
}

func fprKey(fpr string) ([]byte, error) {
	b, err := hex.DecodeString(fpr)
	if err != nil || (len(b) != 20 && len(b) != 32) {
		return nil, fmt.Errorf("fingerprint %q is not 40 or 64 hex digits", fpr)
	}
	return append([]byte{byte(len(b))}, b...), nil
}

// splitFprKey splits a key that starts with a length-prefixed fingerprint.
func splitFprKey(k []byte) (fpr string, rest []byte, err error) {
	if len(k) < 1 || int(k[0]) != 20 && int(k[0]) != 32 || len(k) < 1+int(k[0]) {
		return "", nil, fmt.Errorf("%w: fingerprint key %x", ErrCorrupt, k)
	}
	n := int(k[0])
	return fmtFpr(k[1 : 1+n]), k[1+n:], nil
}

func fmtFpr(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// StoredClaim is the index summary of a claim: enough for consensus
// (group by artifact key, count distinct builders, recency) without
// decoding the envelope. Get returns the full claim.
type StoredClaim struct {
	ID          string        `json:"id"`
	RecipeID    string        `json:"recipe_id"`
	Builder     string        `json:"builder"`
	Result      attest.Result `json:"result"`
	ArtifactKey string        `json:"artifact_key"` // attest.Statement.ArtifactKey()
	Timestamp   time.Time     `json:"timestamp"`
}

const summaryV1 = 1

var resultCodes = map[attest.Result]byte{attest.ResultSuccess: 1, attest.ResultFailed: 2, attest.ResultUnreproducible: 3, attest.ResultMismatch: 4}
var resultNames = map[byte]attest.Result{1: attest.ResultSuccess, 2: attest.ResultFailed, 3: attest.ResultUnreproducible, 4: attest.ResultMismatch}

// encodeSummary is the by_recipe value:
// [1 format=1][1 result][8 unix seconds BE][32 artifact key][1 n][n fpr].
func encodeSummary(st *attest.Statement, artifactKey []byte, fk []byte) []byte {
	out := make([]byte, 0, 42+len(fk))
	out = append(out, summaryV1, resultCodes[st.Result])
	out = binary.BigEndian.AppendUint64(out, uint64(st.Timestamp.Unix()))
	out = append(out, artifactKey...)
	return append(out, fk...)
}

// decodeSummary fills everything but ID and RecipeID.
func decodeSummary(v []byte) (StoredClaim, error) { return decodeSummaryInterned(v, nil) }

// interner reuses the strings of builders and artifact keys during a scan:
// a package has many claims but few distinct builders and results.
type interner struct {
	fprs, akeys map[string]string
	ids         []byte // arena for claim ID strings: one allocation per 64 KiB
}

// claimID is claimIDString with the string's bytes taken from the arena
// (a scan of 20,000 claims would otherwise allocate 20,000 strings).
func (in *interner) claimID(k []byte) (string, error) {
	const idLen = 1 + 58
	if len(k) != 36 || !bytes.HasPrefix(k, cidV1RawSHA256) {
		return claimIDString(k)
	}
	if cap(in.ids)-len(in.ids) < idLen {
		in.ids = make([]byte, 0, 64<<10)
	}
	off := len(in.ids)
	in.ids = append(in.ids, 'b')
	in.ids = in.ids[:off+idLen]
	b32.Encode(in.ids[off+1:], k)
	// The arena's bytes are never written again once handed out.
	return unsafe.String(&in.ids[off], idLen), nil
}

func newInterner() *interner {
	return &interner{fprs: map[string]string{}, akeys: map[string]string{}}
}

// decodeSummaryInterned is decodeSummary with an optional interner.
func decodeSummaryInterned(v []byte, in *interner) (StoredClaim, error) {
	var sc StoredClaim
	if len(v) < 42 || v[0] != summaryV1 {
		return sc, fmt.Errorf("%w: claim summary of %d bytes", ErrCorrupt, len(v))
	}
	r, ok := resultNames[v[1]]
	if !ok {
		return sc, fmt.Errorf("%w: claim summary result code %d", ErrCorrupt, v[1])
	}
	var fprs, akeys map[string]string
	if in != nil {
		fprs, akeys = in.fprs, in.akeys
	}
	fk := v[42:]
	fpr, ok := fprs[string(fk)] // no allocation for the lookup
	if !ok {
		var rest []byte
		var err error
		fpr, rest, err = splitFprKey(fk)
		if err != nil || len(rest) != 0 {
			return sc, fmt.Errorf("%w: claim summary fingerprint", ErrCorrupt)
		}
		if fprs != nil {
			fprs[string(fk)] = fpr
		}
	}
	sc.Result = r
	sc.Timestamp = time.Unix(int64(binary.BigEndian.Uint64(v[2:10])), 0).UTC()
	ak, ok := akeys[string(v[10:42])]
	if !ok {
		ak = hex.EncodeToString(v[10:42])
		if akeys != nil {
			akeys[string(v[10:42])] = ak
		}
	}
	sc.ArtifactKey = ak
	sc.Builder = fpr
	return sc, nil
}

// RecipeSummary is the by_package value, maintained on ingest.
type RecipeSummary struct {
	RecipeID       string            `json:"recipe_id"`
	Package        string            `json:"package"`
	DebianVersion  string            `json:"debian_version"`
	Version        string            `json:"version"` // binary version of the newest claim
	Suite          string            `json:"suite"`
	Arch           string            `json:"arch"`
	Opinion        attest.OpinionRef `json:"opinion"` // as the first claim named it
	SourceSHA256   string            `json:"debian_source_sha256"`
	ImageDigest    string            `json:"container_digest"`
	Claims         int               `json:"claims"`
	Success        int               `json:"success"`
	Failed         int               `json:"failed"`
	Unreproducible int               `json:"unreproducible"`
	Mismatch       int               `json:"mismatch,omitempty"` // red flags: mismatch reports
	Builders       int               `json:"builders"`           // distinct keys with claims (reporters included)
	Voters         int               `json:"voters"`             // distinct keys with a claim that is not a mismatch report (schema 5)
	First          time.Time         `json:"first"`
	Newest         time.Time         `json:"newest"`
}

// by_package summary values: JSON before schema 5, binary since (decoding
// 200 JSON summaries took 1.4 ms of a busy package's `info`).
//
//	[recipeSummaryV2] rk(32) | strings (uvarint length | bytes): package,
//	debian version, version, suite, arch, opinion name, cid, commit,
//	purity, source sha256, image digest | uvarints: claims, success,
//	failed, unreproducible, mismatch, builders, voters | first, newest:
//	each varint unix seconds | uvarint nanoseconds+1 (0: zero time)
const recipeSummaryV2 = 2

func encodeRecipeSummary(r *RecipeSummary) []byte {
	out := make([]byte, 0, 256)
	out = append(out, recipeSummaryV2)
	rk, _ := recipeKey(r.RecipeID)
	if len(rk) != 32 {
		rk = make([]byte, 32) // never: ingest validated the ID; decode refuses it
	}
	out = append(out, rk...)
	for _, f := range []string{r.Package, r.DebianVersion, r.Version, r.Suite, r.Arch, r.Opinion.Name, r.Opinion.CID,
		r.Opinion.Commit, string(r.Opinion.Purity), r.SourceSHA256, r.ImageDigest} {
		out = binary.AppendUvarint(out, uint64(len(f)))
		out = append(out, f...)
	}
	for _, n := range []int{r.Claims, r.Success, r.Failed, r.Unreproducible, r.Mismatch, r.Builders, r.Voters} {
		out = binary.AppendUvarint(out, uint64(n))
	}
	for _, t := range []time.Time{r.First, r.Newest} {
		if t.IsZero() {
			out = binary.AppendVarint(out, 0)
			out = binary.AppendUvarint(out, 0)
			continue
		}
		out = binary.AppendVarint(out, t.Unix())
		out = binary.AppendUvarint(out, uint64(t.Nanosecond())+1)
	}
	return out
}

func decodeRecipeSummary(v []byte) (RecipeSummary, error) {
	var r RecipeSummary
	if len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, &r); err != nil {
			return r, fmt.Errorf("%w: recipe summary: %v", ErrCorrupt, err)
		}
		if _, err := recipeKey(r.RecipeID); err != nil {
			return r, fmt.Errorf("%w: recipe summary: %v", ErrCorrupt, err)
		}
		return r, nil
	}
	bad := func(what string) (RecipeSummary, error) {
		return RecipeSummary{}, fmt.Errorf("%w: recipe summary of %d bytes: %s", ErrCorrupt, len(v), what)
	}
	if len(v) < 33 || v[0] != recipeSummaryV2 {
		return bad("unknown format")
	}
	r.RecipeID = hex.EncodeToString(v[1:33])
	b := v[33:]
	all := string(b) // one allocation: the fields are substrings of it
	for _, f := range []*string{&r.Package, &r.DebianVersion, &r.Version, &r.Suite, &r.Arch, &r.Opinion.Name, &r.Opinion.CID,
		&r.Opinion.Commit, (*string)(&r.Opinion.Purity), &r.SourceSHA256, &r.ImageDigest} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return bad("string length")
		}
		off := len(v) - 33 - len(b) + k
		*f, b = all[off:off+int(n)], b[k+int(n):]
	}
	for _, f := range []*int{&r.Claims, &r.Success, &r.Failed, &r.Unreproducible, &r.Mismatch, &r.Builders, &r.Voters} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > 1<<40 {
			return bad("count")
		}
		*f, b = int(n), b[k:]
	}
	for _, f := range []*time.Time{&r.First, &r.Newest} {
		sec, k := binary.Varint(b)
		if k <= 0 {
			return bad("time")
		}
		b = b[k:]
		ns, k := binary.Uvarint(b)
		if k <= 0 || ns > 1e9 || (ns == 0 && sec != 0) {
			return bad("time")
		}
		b = b[k:]
		if ns > 0 {
			*f = time.Unix(sec, int64(ns-1)).UTC()
		}
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	return r, nil
}

// Digest is the per-package digest kept in the `digests` bucket
// (attest.SetDigest: count and XOR of sha256(claim ID)), stored as 8 bytes
// big-endian count + 32 bytes hash.
type Digest = attest.SetDigest

func decodeDigest(v []byte) (Digest, error) {
	var d Digest
	if len(v) != 40 {
		return d, fmt.Errorf("%w: digest of %d bytes", ErrCorrupt, len(v))
	}
	d.Count = binary.BigEndian.Uint64(v[:8])
	copy(d.Hash[:], v[8:])
	return d, nil
}

func encodeDigest(d Digest) []byte {
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 40), d.Count)
	return append(out, d.Hash[:]...)
}

// Proof records an equivocation: one builder key signed two success claims
// for the same recipe with different artifacts.
type Proof struct {
	Builder  string    `json:"builder"`
	RecipeID string    `json:"recipe_id"`
	ClaimA   string    `json:"claim_a"` // the claim stored first
	ClaimB   string    `json:"claim_b"`
	Detected time.Time `json:"detected"`
}

func decodeProof(v []byte) (Proof, error) {
	var p Proof
	if err := json.Unmarshal(v, &p); err != nil {
		return p, fmt.Errorf("%w: equivocation proof: %v", ErrCorrupt, err)
	}
	return p, nil
}
