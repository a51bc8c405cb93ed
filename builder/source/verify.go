package source

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// maxSignaturePackets bounds the work done on one InRelease.
const maxSignaturePackets = 16

// maxSkew is how far in the future a Release Date or a signature creation
// time may be before it is refused.
const maxSkew = 5 * time.Minute

// DefaultKeyrings returns the keyring files used when WithKeyring is not
// given: Debian's archive keyring plus the bookworm keyrings that are
// present on this host.
func DefaultKeyrings() []string {
	paths := []string{"/usr/share/keyrings/debian-archive-keyring.gpg"}
	extra, _ := filepath.Glob("/usr/share/keyrings/debian-archive-bookworm-*.gpg")
	return append(paths, extra...)
}

// loadKeyring reads binary or armored OpenPGP keyrings and merges them,
// dropping duplicate primary keys.
func loadKeyring(paths []string) (openpgp.EntityList, error) {
	var all openpgp.EntityList
	seen := map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("load keyring: %w (install debian-archive-keyring or pass WithKeyring)", err)
		}
		var el openpgp.EntityList
		if bytes.Contains(b[:min(len(b), 100)], []byte("-----BEGIN PGP")) {
			el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
		} else {
			el, err = openpgp.ReadKeyRing(bytes.NewReader(b))
		}
		if err != nil {
			return nil, fmt.Errorf("load keyring %s: %w", p, err)
		}
		for _, e := range el {
			fp := hex.EncodeToString(e.PrimaryKey.Fingerprint)
			if !seen[fp] {
				seen[fp] = true
				all = append(all, e)
			}
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("load keyring: no keys in %s", strings.Join(paths, ", "))
	}
	return all, nil
}

// verifiedRelease is the outcome of verifyInRelease.
type verifiedRelease struct {
	Plaintext []byte // the signed Release text
	Signer    string // hex fingerprint of the (sub)key whose signature verified
	Primary   string // hex fingerprint of its primary key
	SignedAt  time.Time
}

// verifyInRelease checks a clearsigned InRelease against keyring. Unlike
// clearsign.Block.VerifySignature, which stops at the first signature whose
// issuer is known, it tries every signature packet and accepts when at
// least one verifies with a key that is not revoked now and was not
// expired at the signature's creation time. A signature created in the
// future (beyond maxSkew) or whose own lifetime has passed is not
// accepted. Only SHA-2 family digests are accepted.
func verifyInRelease(data []byte, keyring openpgp.EntityList, now time.Time) (*verifiedRelease, error) {
	blk, rest := clearsign.Decode(data)
	if blk == nil {
		return nil, fmt.Errorf("%w: not a clearsigned message", ErrBadSignature)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: %d bytes of trailing data after the signature", ErrBadSignature, len(rest))
	}
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		// clearsign.Decode skips leading garbage; refuse unsigned text
		// smuggled in front of the signed part.
		return nil, fmt.Errorf("%w: data before the signed message", ErrBadSignature)
	}
	if blk.ArmoredSignature == nil || blk.ArmoredSignature.Type != openpgp.SignatureType {
		return nil, fmt.Errorf("%w: no signature block", ErrBadSignature)
	}
	sigBytes, err := io.ReadAll(io.LimitReader(blk.ArmoredSignature.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: reading signature armor: %v", ErrBadSignature, err)
	}

	var reasons []string
	pr := packet.NewReader(bytes.NewReader(sigBytes))
	for n := 0; ; n++ {
		if n >= maxSignaturePackets {
			reasons = append(reasons, fmt.Sprintf("more than %d packets, rest ignored", maxSignaturePackets))
			break
		}
		p, err := pr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("packet %d: %v", n+1, err))
			break
		}
		sig, ok := p.(*packet.Signature)
		if !ok {
			reasons = append(reasons, fmt.Sprintf("packet %d: not a signature (%T)", n+1, p))
			continue
		}
		v, why := verifyOne(blk, sig, keyring, now)
		if v != nil {
			return v, nil
		}
		reasons = append(reasons, fmt.Sprintf("signature %d: %s", n+1, why))
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no signature packets")
	}
	return nil, fmt.Errorf("%w: %s", ErrBadSignature, strings.Join(reasons, "; "))
}

// verifyOne checks one signature packet. It returns the result, or nil and
// the reason it was not accepted.
func verifyOne(blk *clearsign.Block, sig *packet.Signature, keyring openpgp.EntityList, now time.Time) (*verifiedRelease, string) {
	issuer, ok := issuerKeyID(sig)
	if !ok {
		return nil, "no issuer key ID"
	}
	label := fmt.Sprintf("key %016X", issuer)
	if sig.SigType != packet.SigTypeText && sig.SigType != packet.SigTypeBinary {
		return nil, fmt.Sprintf("%s: signature type %#x is not a document signature", label, sig.SigType)
	}
	switch sig.Hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA224:
	default:
		return nil, fmt.Sprintf("%s: weak or unsupported digest %v", label, sig.Hash)
	}
	if sig.CreationTime.After(now.Add(maxSkew)) {
		return nil, fmt.Sprintf("%s: signature created in the future (%s)", label, sig.CreationTime.UTC().Format(time.RFC3339))
	}
	if sig.SigLifetimeSecs != nil && *sig.SigLifetimeSecs != 0 && sig.SigExpired(now) {
		return nil, fmt.Sprintf("%s: signature expired", label)
	}
	keys := keyring.KeysByIdUsage(issuer, packet.KeyFlagSign)
	if len(keys) == 0 {
		return nil, label + ": not in the keyring (or not a signing key)"
	}
	why := ""
	for _, key := range keys {
		if fp := sig.IssuerFingerprint; len(fp) > 0 && !bytes.Equal(fp, key.PublicKey.Fingerprint) {
			why = label + ": issuer fingerprint does not match the keyring key"
			continue
		}
		h, err := sig.PrepareVerify()
		if err != nil {
			why = fmt.Sprintf("%s: %v", label, err)
			continue
		}
		var w io.Writer = h
		if sig.SigType == packet.SigTypeText {
			w = openpgp.NewCanonicalTextHash(h)
		}
		if _, err := w.Write(blk.Bytes); err != nil {
			why = fmt.Sprintf("%s: %v", label, err)
			continue
		}
		if err := key.PublicKey.VerifySignature(h, sig); err != nil {
			why = fmt.Sprintf("%s: signature does not verify: %v", label, err)
			continue
		}
		// The signature is cryptographically good; now the key's status.
		if r := keyProblem(key, sig.CreationTime, now); r != "" {
			why = fmt.Sprintf("%s: %s", label, r)
			continue
		}
		return &verifiedRelease{
			Plaintext: blk.Plaintext,
			Signer:    hex.EncodeToString(key.PublicKey.Fingerprint),
			Primary:   hex.EncodeToString(key.Entity.PrimaryKey.Fingerprint),
			SignedAt:  sig.CreationTime,
		}, ""
	}
	return nil, why
}

// keyProblem says why key may not be trusted for a signature made at
// signedAt, or "" if it may. Revocation is judged now (a revoked key is
// never accepted); expiry is judged at the signature's creation time.
func keyProblem(key openpgp.Key, signedAt, now time.Time) string {
	e := key.Entity
	primarySig, primaryID := e.PrimarySelfSignature()
	if primarySig == nil {
		return "primary key has no valid self-signature"
	}
	if e.Revoked(now) || (primaryID != nil && primaryID.Revoked(now)) {
		return "key is revoked"
	}
	subkey := key.PublicKey != e.PrimaryKey
	if subkey && key.Revoked(now) {
		return "signing subkey is revoked"
	}
	if e.PrimaryKey.KeyExpired(primarySig, signedAt) {
		return "primary key was expired (or not yet created) when the signature was made"
	}
	if subkey {
		if key.SelfSignature == nil {
			return "signing subkey has no binding signature"
		}
		if key.PublicKey.KeyExpired(key.SelfSignature, signedAt) {
			return "signing subkey was expired (or not yet created) when the signature was made"
		}
		if key.SelfSignature.SigExpired(signedAt) {
			return "subkey binding signature was not valid when the signature was made"
		}
	}
	return ""
}

func issuerKeyID(sig *packet.Signature) (uint64, bool) {
	if sig.IssuerKeyId != nil {
		return *sig.IssuerKeyId, true
	}
	// v4 fingerprints end with the key ID.
	if fp := sig.IssuerFingerprint; len(fp) == 20 {
		return binary.BigEndian.Uint64(fp[12:]), true
	}
	return 0, false
}
