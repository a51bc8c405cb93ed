package attest

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Revocation describes a key's revocation signature (OpenPGP signature
// type 0x20, made by the key itself): when it takes effect, why, and the
// successor it names for a rotation.
type Revocation struct {
	Time time.Time `json:"time"`
	// Reason is the OpenPGP reason code in words: "superseded",
	// "compromised", "retired", "no reason" or "other".
	Reason string `json:"reason"`
	Text   string `json:"text,omitempty"`
	// Successor is the key named by "successor: <FINGERPRINT>" in the
	// reason text of a revocation that is not for a compromised key (a
	// rotation), "" otherwise.
	Successor string `json:"successor,omitempty"`
}

// Compromised reports a revocation for a compromised key: none of the
// key's signatures count, whenever they were made.
func (r *Revocation) Compromised() bool {
	return r != nil && r.Reason == reasonWords[packet.KeyCompromised]
}

var reasonWords = map[packet.ReasonForRevocation]string{
	packet.NoReason:       "no reason",
	packet.KeySuperseded:  "superseded",
	packet.KeyCompromised: "compromised",
	packet.KeyRetired:     "retired",
}

func reasonWord(r *packet.ReasonForRevocation) string {
	if r == nil {
		return reasonWords[packet.NoReason]
	}
	if w, ok := reasonWords[*r]; ok {
		return w
	}
	return "other"
}

// successorRE finds "successor: <40 hex digits>" in a revocation's reason
// text (spaces inside the fingerprint, as gpg prints it, are allowed).
var successorRE = regexp.MustCompile(`(?i)\bsuccessor:\s*((?:[0-9a-f]{4}\s?){9}[0-9a-f]{4})\b`)

// SuccessorOf parses the successor named in a revocation reason text.
func SuccessorOf(text string) string {
	m := successorRE.FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	return strings.ToUpper(strings.Join(strings.Fields(m[1]), ""))
}

// MaxRevocationText bounds the reason text of a revocation this package
// makes.
const MaxRevocationText = 512

// RevocationOf returns e's key revocation in effect at now, or nil. Only
// revocation signatures by the key itself exist in a parsed entity
// (go-crypto refuses a key carrying any other). With several, the
// earliest in effect is returned; a compromised one wins; a successor is
// only reported when every revocation in effect names the same one.
func RevocationOf(e *openpgp.Entity, now time.Time) *Revocation {
	if e == nil || !e.Revoked(now) {
		return nil
	}
	var out *Revocation
	successors := map[string]bool{}
	for _, sig := range e.Revocations {
		if sig == nil {
			continue
		}
		compromised := sig.RevocationReason != nil && *sig.RevocationReason == packet.KeyCompromised
		if !compromised && sig.SigExpired(now) {
			continue
		}
		r := &Revocation{Time: sig.CreationTime.UTC(), Reason: reasonWord(sig.RevocationReason), Text: sig.RevocationReasonText}
		successors[SuccessorOf(sig.RevocationReasonText)] = true
		if out == nil || (r.Compromised() && !out.Compromised()) || (r.Compromised() == out.Compromised() && r.Time.Before(out.Time)) {
			out = r
		}
	}
	if out == nil {
		return nil
	}
	if len(successors) == 1 && !out.Compromised() {
		for s := range successors {
			if s != Fingerprint(e) {
				out.Successor = s
			}
		}
	}
	return out
}

// Revoke makes a key revocation signature with id's own key and returns
// id's public key carrying it (binary), to store and publish. With a
// successor (a fingerprint) the reason is "superseded" and the text
// starts with "successor: <FINGERPRINT>" (a rotation); otherwise the
// reason is "retired", or "compromised" when compromised is set. id is
// not changed.
func Revoke(id *Identity, successor, text string, compromised bool, now time.Time) ([]byte, error) {
	if id == nil || id.Entity == nil || id.Entity.PrivateKey == nil {
		return nil, errors.New("revoke: the node's private builder key is required")
	}
	text = strings.TrimSpace(text)
	if strings.ContainsAny(text, "\r\n") {
		return nil, fmt.Errorf("revoke %s: the reason text must be one line", id.Fingerprint())
	}
	reason := packet.KeyRetired
	if successor != "" {
		if SuccessorOf("successor: "+successor) != successor || len(successor) != 40 {
			return nil, fmt.Errorf("revoke %s: successor %q is not a 40-digit upper-case fingerprint", id.Fingerprint(), successor)
		}
		if successor == id.Fingerprint() {
			return nil, fmt.Errorf("revoke %s: a key cannot be its own successor", successor)
		}
		if compromised {
			return nil, fmt.Errorf("revoke %s: a compromised key names no successor (its old signatures cannot be told from forged ones)", id.Fingerprint())
		}
		reason = packet.KeySuperseded
		text = strings.TrimSpace("successor: " + successor + "; " + text)
		text = strings.TrimSuffix(text, ";")
	} else if SuccessorOf(text) != "" {
		return nil, fmt.Errorf("revoke %s: name the successor with --successor, not in the reason text", id.Fingerprint())
	}
	if compromised {
		reason = packet.KeyCompromised
	}
	if len(text) > MaxRevocationText {
		return nil, fmt.Errorf("revoke %s: reason text of %d bytes exceeds %d", id.Fingerprint(), len(text), MaxRevocationText)
	}
	// A shallow copy: RevokeKey appends to Revocations, which must not
	// change under concurrent signers of id.
	e := *id.Entity
	e.Revocations = append([]*packet.Signature(nil), id.Entity.Revocations...)
	cfg := pgpConfig()
	cfg.Time = func() time.Time { return now }
	if err := e.RevokeKey(reason, text, cfg); err != nil {
		return nil, fmt.Errorf("revoke %s: %w", id.Fingerprint(), err)
	}
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		return nil, fmt.Errorf("revoke %s: serialize: %w", id.Fingerprint(), err)
	}
	return b.Bytes(), nil
}
