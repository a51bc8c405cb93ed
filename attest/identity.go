package attest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// pgpConfig is the OpenPGP configuration for keys and signatures: v4
// Ed25519 (legacy EdDSA, which GnuPG 2.2 verifies) with SHA-256.
func pgpConfig() *packet.Config {
	return &packet.Config{
		Algorithm:       packet.PubKeyAlgoEdDSA,
		Curve:           packet.Curve25519,
		DefaultHash:     crypto.SHA256,
		V6Keys:          false,
		KeyLifetimeSecs: 0,
	}
}

// Identity is a builder's OpenPGP key: an Ed25519 primary key that
// certifies and an Ed25519 signing subkey.
type Identity struct {
	Entity *openpgp.Entity
	pub    []byte
	once   sync.Once
}

// GenerateIdentity creates a new builder key.
func GenerateIdentity(name, email string) (*Identity, error) {
	if name == "" {
		name = "Lebowski builder"
	}
	e, err := openpgp.NewEntity(name, "lebowski builder key", email, pgpConfig())
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	// NewEntity makes an encryption subkey a builder never uses: drop it,
	// and add a signing subkey so the primary key stays a certification key.
	e.Subkeys = nil
	if err := e.AddSigningSubkey(pgpConfig()); err != nil {
		return nil, fmt.Errorf("generate key: signing subkey: %w", err)
	}
	return &Identity{Entity: e}, nil
}

// Fingerprint returns the upper-case hex fingerprint of an entity's primary key.
func Fingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

// Fingerprint of the identity.
func (id *Identity) Fingerprint() string { return Fingerprint(id.Entity) }

// PublicKey is the binary transferable public key.
func (id *Identity) PublicKey() []byte {
	id.once.Do(func() {
		var b bytes.Buffer
		if err := id.Entity.Serialize(&b); err == nil {
			id.pub = b.Bytes()
		}
	})
	return id.pub
}

// ArmoredPublicKey returns the public key armored, for `gpg --import`.
func (id *Identity) ArmoredPublicKey() (string, error) { return ArmorPublicKey(id.Entity) }

// ArmorPublicKey armors an entity's public key.
func ArmorPublicKey(e *openpgp.Entity) (string, error) {
	var b strings.Builder
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		return "", err
	}
	if err := e.Serialize(w); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Save writes the private key (armored, unencrypted) with mode 0600,
// atomically. The file must not exist unless overwrite is set.
func (id *Identity) Save(path string, overwrite bool) error {
	if !overwrite {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("save key: %s already exists (refusing to overwrite a builder key)", path)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save key: %w", err)
	}
	w, err := armor.Encode(tmp, openpgp.PrivateKeyType, nil)
	if err == nil {
		err = id.Entity.SerializePrivate(w, pgpConfig())
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save key %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// LoadIdentity reads a private key written by Save. It refuses files that
// other users can read.
func LoadIdentity(path string) (*Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w (create one with `lebowski key gen`)", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load key %s: mode %o lets other users read the private key; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	defer f.Close()
	el, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", path, err)
	}
	if len(el) != 1 || el[0].PrivateKey == nil {
		return nil, fmt.Errorf("load key %s: want exactly one private key, found %d entities", path, len(el))
	}
	if el[0].PrivateKey.Encrypted {
		return nil, fmt.Errorf("load key %s: passphrase-protected keys are not supported yet", path)
	}
	return &Identity{Entity: el[0]}, nil
}

// ParsePublicKey parses one transferable public key, binary or armored
// (at most 64 KiB), for every path that takes keys from outside: the keys
// topic, keys embedded in claims, sync replies, imports. go-crypto
// verifies a key's self-signatures while parsing it, so checkKeyCost
// (keycost.go) first applies the builder-key rules to the raw packets,
// without cryptography: Ed25519 or RSA 2048–4096 keys only, one primary
// key, at most MaxKeyUserIDs user IDs and MaxKeySubkeys subkeys,
// MaxKeySignatures signatures of which at most MaxKeyVerifications, of
// weight MaxKeyVerifyCost, are verified while parsing, no repeated
// packet, no secret key. Its refusals wrap ErrKeyNotAllowed.
//
// A key within the rules that go-crypto then refuses (a bad signature)
// cost its verifications; that refusal is remembered by SHA-256 of the
// binary key (the last 4096), so the same bytes sent again cost a hash.
// Rule refusals are not remembered: they cost less than the hash. Every
// success parses afresh and returns an entity the caller may change
// (MergeKey does).
func ParsePublicKey(b []byte) (*openpgp.Entity, error) { return parsePublicKey(b, refusedKeys) }

// parsePublicKey is ParsePublicKey with refusals remembered in refused
// (nil: not at all, for benchmarks of a first refusal).
func parsePublicKey(b []byte, refused *refusalCache) (*openpgp.Entity, error) {
	if len(b) > maxKeyBytes {
		return nil, errors.New("public key larger than 64 KiB")
	}
	b, err := dearmorKey(b)
	if err != nil {
		return nil, err
	}
	if err := checkKeyCost(b); err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if refused == nil {
		return readOneKey(b)
	}
	h := sha256.Sum256(b)
	if err := refused.get(h); err != nil {
		return nil, err
	}
	e, err := readOneKey(b)
	if err != nil {
		refused.add(h, err)
		return nil, err
	}
	return e, nil
}

// dearmorKey returns the binary key of an armored public key block, and b
// itself when it is not armored.
func dearmorKey(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		return b, nil
	}
	block, err := armor.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	switch block.Type {
	case openpgp.PublicKeyType:
	case openpgp.PrivateKeyType:
		return nil, fmt.Errorf("parse public key: %w: secret key material: give the public key (gpg --export, not --export-secret-keys)", ErrKeyNotAllowed)
	default:
		return nil, fmt.Errorf("parse public key: armored block is %q, not a key", block.Type)
	}
	if b, err = io.ReadAll(io.LimitReader(block.Body, maxKeyBytes+1)); err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if len(b) > maxKeyBytes {
		return nil, errors.New("public key larger than 64 KiB")
	}
	return b, nil
}

// readOneKey is go-crypto's parse of a key block that passed checkKeyCost.
func readOneKey(b []byte) (*openpgp.Entity, error) {
	el, err := openpgp.ReadKeyRing(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("parse public key: want exactly one key, found %d", len(el))
	}
	return el[0], nil
}

// KeyLookup finds a builder's public key by fingerprint (nil if unknown).
type KeyLookup interface {
	Lookup(fingerprint string) *openpgp.Entity
}

// Keyring is an in-memory, concurrency-safe KeyLookup.
type Keyring struct {
	mu   sync.RWMutex
	keys map[string]*openpgp.Entity
}

// NewKeyring returns a keyring holding es.
func NewKeyring(es ...*openpgp.Entity) *Keyring {
	k := &Keyring{keys: make(map[string]*openpgp.Entity)}
	for _, e := range es {
		k.Add(e)
	}
	return k
}

// Add stores e under its fingerprint.
func (k *Keyring) Add(e *openpgp.Entity) {
	k.mu.Lock()
	k.keys[Fingerprint(e)] = e
	k.mu.Unlock()
}

// Lookup implements KeyLookup.
func (k *Keyring) Lookup(fpr string) *openpgp.Entity {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[fpr]
}

// Len is the number of keys.
func (k *Keyring) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.keys)
}

var _ io.Writer = (*strings.Builder)(nil)
