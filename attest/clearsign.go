package attest

import (
	"bytes"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// ClearSign returns data as an OpenPGP cleartext-signed message by id's
// signing key: what apt reads as a repository's InRelease file.
func ClearSign(id *Identity, data []byte) ([]byte, error) {
	key, ok := id.Entity.SigningKey(time.Now())
	if !ok || key.PrivateKey == nil {
		return nil, fmt.Errorf("clearsign: %s has no usable signing key", id.Fingerprint())
	}
	var out bytes.Buffer
	w, err := clearsign.Encode(&out, key.PrivateKey, pgpConfig())
	if err != nil {
		return nil, fmt.Errorf("clearsign: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return nil, fmt.Errorf("clearsign: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("clearsign: %w", err)
	}
	return out.Bytes(), nil
}
