package p2p

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// LoadOrCreateIdentity returns the libp2p private key stored at path
// (crypto.MarshalPrivateKey bytes), creating an Ed25519 key with mode 0600
// if the file does not exist. A key file readable by other users is
// refused.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("load peer key: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("load peer key %s: mode %o lets other users read the private key; run chmod 600 %s", path, fi.Mode().Perm(), path)
		}
		sk, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("load peer key %s: %w (delete the file to create a new peer identity)", path, err)
		}
		return sk, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("load peer key: %w", err)
	}
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, fmt.Errorf("create peer key: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("create peer key: %w", err)
	}
	if err := writeFileAtomic(path, b); err != nil {
		return nil, fmt.Errorf("create peer key %s: %w", path, err)
	}
	return sk, nil
}

func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".peerkey-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
