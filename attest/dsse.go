package attest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// PayloadTypeInToto is the DSSE payload type of an in-toto statement.
const PayloadTypeInToto = "application/vnd.in-toto+json"

// DSSEEnvelope is a Dead Simple Signing Envelope
// (github.com/secure-systems-lab/dsse): the payload, its type, and
// signatures over PAE(type, payload). Lebowski's signatures are binary
// detached OpenPGP signatures by the builder key; keyid is its
// fingerprint.
type DSSEEnvelope struct {
	PayloadType string          `json:"payloadType"`
	Payload     string          `json:"payload"` // standard base64
	Signatures  []DSSESignature `json:"signatures"`
}

// DSSESignature is one signature of a DSSEEnvelope.
type DSSESignature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"` // standard base64
}

// PAE is DSSE's pre-authentication encoding:
// "DSSEv1" SP len(type) SP type SP len(body) SP body.
func PAE(payloadType string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteByte(' ')
	b.Write(body)
	return b.Bytes()
}

// SignDSSE wraps payload in a DSSE envelope signed by id.
func SignDSSE(id *Identity, payloadType string, payload []byte) (*DSSEEnvelope, error) {
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, id.Entity, bytes.NewReader(PAE(payloadType, payload)), pgpConfig()); err != nil {
		return nil, fmt.Errorf("dsse: sign: %w", err)
	}
	return &DSSEEnvelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []DSSESignature{{KeyID: id.Fingerprint(), Sig: base64.StdEncoding.EncodeToString(sig.Bytes())}},
	}, nil
}

// VerifyDSSE checks that signer made one of env's signatures over
// PAE(type, payload) and returns the payload.
func VerifyDSSE(env *DSSEEnvelope, signer *openpgp.Entity) ([]byte, error) {
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, bad("dsse", fmt.Errorf("payload: %w", err))
	}
	pae := PAE(env.PayloadType, payload)
	fpr := Fingerprint(signer)
	for _, s := range env.Signatures {
		if s.KeyID != fpr {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			return nil, bad("dsse", fmt.Errorf("signature: %w", err))
		}
		if _, err := openpgp.CheckDetachedSignature(openpgp.EntityList{signer}, bytes.NewReader(pae), bytes.NewReader(sig), pgpConfig()); err != nil {
			return nil, bad("dsse", fmt.Errorf("%w: %v", ErrInvalidSignature, err))
		}
		return payload, nil
	}
	return nil, bad("dsse", fmt.Errorf("%w: no signature by %s", ErrInvalidSignature, fpr))
}

// Encode is the envelope's JSON.
func (e *DSSEEnvelope) Encode() ([]byte, error) { return json.MarshalIndent(e, "", "  ") }
