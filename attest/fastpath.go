package attest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Fast paths for the canonical encodings (issue 12: Verify near raw
// OpenPGP cost). Every claim Sign produces is canonical, so nearly every
// claim a node sees is canonical too; these parsers read exactly the
// canonical layout — sorted keys, no whitespace, omitempty fields present
// only when non-empty, strings without escapes — in one pass, and report
// ok=false on anything else. The caller then takes the encoding/json path,
// which accepts the same values and produces the errors. Because a parser
// accepts only the one encoding of a value, "accepted" implies "canonical"
// without re-encoding. FuzzFastPathsMatchJSON checks both claims against
// encoding/json: whatever a fast path accepts, the slow path accepts with
// the same value, and re-encodes to the same bytes.

// scan is a cursor over a string.
type scan struct {
	s  string
	i  int
	ok bool
}

// lit consumes the literal l.
func (r *scan) lit(l string) {
	if r.ok && strings.HasPrefix(r.s[r.i:], l) {
		r.i += len(l)
		return
	}
	r.ok = false
}

// has reports whether the literal l follows (without consuming it).
func (r *scan) has(l string) bool { return r.ok && strings.HasPrefix(r.s[r.i:], l) }

// str consumes a JSON string whose encoding/json form has no escapes: no
// '"', '\\', control characters, U+2028/U+2029 or invalid UTF-8.
func (r *scan) str() string {
	if !r.ok || r.i >= len(r.s) || r.s[r.i] != '"' {
		r.ok = false
		return ""
	}
	start := r.i + 1
	for j := start; j < len(r.s); {
		c := r.s[j]
		switch {
		case c == '"':
			r.i = j + 1
			return r.s[start:j]
		case c == '\\' || c < 0x20:
			r.ok = false
			return ""
		case c < utf8.RuneSelf:
			j++
		default:
			ru, n := utf8.DecodeRuneInString(r.s[j:])
			if ru == utf8.RuneError || ru == '\u2028' || ru == '\u2029' {
				r.ok = false
				return ""
			}
			j += n
		}
	}
	r.ok = false
	return ""
}

// field consumes `,"key":` (or `"key":` for the first field).
func (r *scan) field(first bool, key string) {
	if !first {
		r.lit(",")
	}
	r.lit(`"`)
	r.lit(key)
	r.lit(`":`)
}

// optional reports whether the omitempty field key is present next.
func (r *scan) optional(key string) bool {
	return r.has(`,"` + key + `":`) // only ever after the first field
}

// strField consumes `,"key":` (or the first field's `"key":`) and a string.
func (r *scan) strField(first bool, key string) string {
	r.field(first, key)
	return r.str()
}

// optStr consumes the omitempty string field key when present ("" when
// absent; present, it is never "").
func (r *scan) optStr(key string) string {
	if !r.optional(key) {
		return ""
	}
	r.field(false, key)
	return r.nonEmpty()
}

// optArts consumes the omitempty artifact list key when present.
func (r *scan) optArts(key string) []Artifact {
	if !r.optional(key) {
		return nil
	}
	r.field(false, key)
	return r.optionalArtifacts()
}

// nonEmpty consumes an omitempty string field's value, which is never "".
func (r *scan) nonEmpty() string {
	v := r.str()
	if v == "" {
		r.ok = false
	}
	return v
}

// artifacts consumes `[]` or `[{"name":…,"sha256":…},…]` (Canonical
// writes a nil list as `[]`).
func (r *scan) artifacts() []Artifact {
	r.lit("[")
	out := []Artifact{}
	if r.has("]") {
		r.lit("]")
		return out
	}
	for r.ok {
		r.lit(`{"name":`)
		name := r.str()
		r.lit(`,"sha256":`)
		sum := r.str()
		r.lit("}")
		out = append(out, Artifact{Name: name, SHA256: sum})
		if len(out) > MaxArtifacts+1 {
			r.ok = false // Validate refuses it anyway; bound the work
		}
		if r.has("]") {
			r.lit("]")
			return out
		}
		r.lit(",")
	}
	return nil
}

// optionalArtifacts consumes an omitempty artifact list: when present it
// has at least one element.
func (r *scan) optionalArtifacts() []Artifact {
	a := r.artifacts()
	if len(a) == 0 {
		r.ok = false
	}
	return a
}

// timestamp consumes a timestamp as Canonical writes it: UTC, whole
// seconds, "Z".
func (r *scan) timestamp() time.Time {
	v := r.str()
	if !r.ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || t.Location() != time.UTC || t.Nanosecond() != 0 || t.Format(time.RFC3339) != v {
		r.ok = false
		return time.Time{}
	}
	return t
}

// parseCanonicalStatement reads a statement in its canonical encoding.
func parseCanonicalStatement(payload []byte) (*Statement, bool) {
	r := &scan{s: string(payload), ok: true}
	var s Statement
	r.lit("{")
	s.Arch = r.strField(true, "arch")
	r.field(false, "artifacts")
	s.Artifacts = r.artifacts()
	s.Builder = r.strField(false, "builder")
	s.BuildinfoCID = r.optStr("buildinfo_cid")
	s.ContainerDigest = r.strField(false, "container_digest")
	s.DebianSourceSHA256 = r.strField(false, "debian_source_sha256")
	s.DebianVersion = r.strField(false, "debian_version")
	s.DiffoscopeCID = r.optStr("diffoscope_cid")
	s.Expected = r.optArts("expected")
	s.LockCID = r.optStr("lock_cid")
	s.LogCID = r.optStr("log_cid")
	r.field(false, "opinion")
	r.lit("{")
	s.Opinion.CID = r.strField(true, "cid")
	s.Opinion.Commit = r.optStr("commit")
	s.Opinion.Name = r.strField(false, "name")
	s.Opinion.Purity = vocab.Purity(r.strField(false, "purity"))
	r.lit("}")
	s.Package = r.strField(false, "package")
	s.PeerID = r.optStr("peer_id")
	s.Reason = r.optStr("reason")
	s.RecipeID = r.strField(false, "recipe_id")
	s.Result = Result(r.strField(false, "result"))
	s.SecondArtifacts = r.optArts("second_artifacts")
	s.Suite = r.strField(false, "suite")
	r.field(false, "timestamp")
	s.Timestamp = r.timestamp()
	s.Type = r.strField(false, "type")
	s.Version = r.strField(false, "version")
	r.lit("}")
	if !r.ok || r.i != len(r.s) {
		return nil, false
	}
	return &s, true
}

// parseCanonicalEnvelope reads an envelope in its canonical encoding and
// also returns the canonical encoding without the key (the claim's Raw
// bytes), which is then a slice of the input rather than a re-encoding.
func parseCanonicalEnvelope(b []byte) (*Envelope, []byte, bool) {
	r := &scan{s: string(b), ok: true}
	var e Envelope
	r.lit("{")
	afterKey := 1
	first := true
	if r.has(`"key":`) {
		r.field(true, "key")
		e.Key = r.base64()
		if len(e.Key) == 0 {
			return nil, nil, false
		}
		afterKey = r.i + 1 // skip the comma: `{` + what follows it
		first = false
	}
	r.field(first, "payload")
	e.Payload = r.base64()
	r.field(false, "payload_type")
	e.PayloadType = r.str()
	r.field(false, "signature")
	e.Signature = r.armored()
	r.lit("}")
	if !r.ok || r.i != len(r.s) {
		return nil, nil, false
	}
	raw := make([]byte, 0, 1+len(b)-afterKey)
	raw = append(append(raw, '{'), b[afterKey:]...)
	return &e, raw, true
}

// base64 consumes a string holding strictly padded standard base64 (the
// one encoding encoding/json produces for []byte).
func (r *scan) base64() []byte {
	v := r.str()
	if !r.ok {
		return nil
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Strict().Decode(out, []byte(v))
	if err != nil {
		r.ok = false
		return nil
	}
	return out[:n]
}

// armored consumes the signature string, whose only escape is `\n`.
func (r *scan) armored() string {
	if !r.ok || r.i >= len(r.s) || r.s[r.i] != '"' {
		r.ok = false
		return ""
	}
	var sb strings.Builder
	for j := r.i + 1; j < len(r.s) && j-r.i < 2*maxSignatureSize; j++ {
		switch c := r.s[j]; {
		case c == '"':
			r.i = j + 1
			return sb.String()
		case c == '\\':
			if j+1 < len(r.s) && r.s[j+1] == 'n' {
				sb.WriteByte('\n')
				j++
				continue
			}
			r.ok = false
			return ""
		case armorChar(c):
			if sb.Len() == 0 {
				sb.Grow(512)
			}
			sb.WriteByte(c)
		default:
			r.ok = false
			return ""
		}
	}
	r.ok = false
	return ""
}

// armorChar reports whether c may appear in an armored signature: the
// base64 alphabet, '=', '-' and the spaces of the armor lines.
func armorChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '+' || c == '/' || c == '=' || c == '-' || c == ' '
}

const (
	armorBegin = "-----BEGIN PGP SIGNATURE-----\n\n"
	armorEnd   = "\n-----END PGP SIGNATURE-----"
)

// armorFast is armorSignature without the writer stack: the same bytes
// (TestArmorFastMatchesGoCrypto).
func armorFast(body []byte) string {
	enc := base64.StdEncoding.EncodeToString(body)
	var sb strings.Builder
	sb.Grow(len(armorBegin) + len(enc) + len(enc)/64 + 8 + len(armorEnd))
	sb.WriteString(armorBegin)
	for i := 0; i < len(enc); i += 64 {
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(enc[i:min(i+64, len(enc))])
	}
	c := crc24(body)
	var sum [4]byte
	base64.StdEncoding.Encode(sum[:], []byte{byte(c >> 16), byte(c >> 8), byte(c)})
	sb.WriteString("\n=")
	sb.Write(sum[:])
	sb.WriteString(armorEnd)
	return sb.String()
}

// dearmorFast decodes an armored signature in exactly the form armorFast
// writes, else reports ok=false.
func dearmorFast(armored string) ([]byte, bool) {
	if len(armored) < len(armorBegin)+len(armorEnd) ||
		!strings.HasPrefix(armored, armorBegin) || !strings.HasSuffix(armored, armorEnd) {
		return nil, false
	}
	mid := armored[len(armorBegin) : len(armored)-len(armorEnd)]
	k := strings.LastIndex(mid, "\n=")
	if k < 0 {
		return nil, false
	}
	data := strings.ReplaceAll(mid[:k], "\n", "")
	body, err := base64.StdEncoding.Strict().DecodeString(data)
	if err != nil || armorFast(body) != armored {
		return nil, false
	}
	return body, true
}

// crc24 is the OpenPGP armor checksum (RFC 4880 section 6.1), by table.
func crc24(d []byte) uint32 {
	crc := uint32(0xb704ce)
	for _, b := range d {
		crc = crc<<8 ^ crc24Table[byte(crc>>16)^b]
	}
	return crc & 0xffffff
}

var crc24Table = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 16
		for range 8 {
			c <<= 1
			if c&0x1000000 != 0 {
				c ^= 0x1864cfb
			}
		}
		t[i] = c & 0xffffff
	}
	return t
}()

// SplitEnvelope returns the payload and the binary signature of a
// canonical envelope without key (a claim's Raw bytes), or ok=false. The
// store keeps claims in this compact form and rebuilds the exact bytes
// with JoinEnvelope.
func SplitEnvelope(raw []byte) (payload, sig []byte, ok bool) {
	e, _, ok := parseCanonicalEnvelope(raw)
	if !ok || len(e.Key) != 0 || e.PayloadType != PayloadTypeV1 {
		return nil, nil, false
	}
	sig, ok = dearmorFast(e.Signature)
	return e.Payload, sig, ok
}

// JoinEnvelope is SplitEnvelope's inverse: the envelope with this payload
// and binary signature, and its canonical encoding without key.
func JoinEnvelope(payload, sig []byte) (*Envelope, []byte) {
	env := &Envelope{PayloadType: PayloadTypeV1, Payload: payload, Signature: armorFast(sig)}
	b64 := base64.StdEncoding
	raw := make([]byte, 0, b64.EncodedLen(len(payload))+len(env.Signature)+len(PayloadTypeV1)+64)
	raw = append(raw, `{"payload":"`...)
	raw = b64.AppendEncode(raw, payload)
	raw = append(raw, `","payload_type":"`+PayloadTypeV1+`","signature":"`...)
	raw = append(raw, strings.ReplaceAll(env.Signature, "\n", `\n`)...)
	raw = append(raw, `"}`...)
	return env, raw
}

// ParseStoredStatement decodes the payload of a claim that passed
// verification earlier (the store's copy): the canonical fast path, else a
// plain JSON decode. It does not validate: use VerifyClaim for bytes from
// outside.
func ParseStoredStatement(payload []byte) (*Statement, error) {
	if s, ok := parseCanonicalStatement(payload); ok {
		return s, nil
	}
	var s Statement
	if err := json.Unmarshal(payload, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
