package opinions

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// MaxBundleSize bounds an opinion bundle: the file, its patches, its lock.
const MaxBundleSize = MaxFileSize + MaxPatches*MaxPatchSize*4/3 + MaxLockSize + 64<<10

// ErrBundle wraps every problem with a fetched bundle (and unwraps to
// ErrInvalid): the peer that sent it is to blame.
var ErrBundle = fmt.Errorf("%w: bad opinion bundle", ErrInvalid)

type bundleDoc struct {
	Type    string          `json:"type"`
	Name    string          `json:"name"`
	Package string          `json:"package"`
	Lock    json.RawMessage `json:"lock"`
	Patches []struct {
		Path   string `json:"path"`
		SHA256 string `json:"sha256"`
		Data   string `json:"data"`
	} `json:"patches"`
}

// WriteBundle checks that data is the bundle (Canonical) of the opinion
// whose CID is cid, writes it under root as <package>/<name>.yaml with its
// patches and lock, loads it back strictly and checks the CID again. It is
// how a node keeps an opinion it fetched from a peer by CID: nothing is
// trusted but the CID, and a bundle whose bytes do not match is refused
// before anything is written. An opinion of that name already under root
// is replaced only when its CID differs.
func WriteBundle(root, cid string, data []byte) (*Opinion, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("%w: %d bytes (max %d)", ErrBundle, len(data), MaxBundleSize)
	}
	if got := vocab.CID(data); got != cid {
		return nil, fmt.Errorf("%w: bytes have CID %s, not %s", ErrBundle, got, cid)
	}
	var doc bundleDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	if doc.Type != CanonicalType {
		return nil, fmt.Errorf("%w: type %q, want %q", ErrBundle, doc.Type, CanonicalType)
	}
	if vocab.CheckPackage(doc.Package) != nil || vocab.CheckOpinionName(doc.Name) != nil {
		return nil, fmt.Errorf("%w: %q/%q is not a package/opinion", ErrBundle, doc.Package, doc.Name)
	}
	// The opinion file: the bundle's fields without type, lock and patch
	// bytes. JSON is YAML, so the strict loader reads it as it is.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	delete(fields, "type")
	delete(fields, "lock")
	var plain []map[string]string
	for _, p := range doc.Patches {
		plain = append(plain, map[string]string{"path": p.Path, "sha256": p.SHA256})
	}
	pb, _ := json.Marshal(plain)
	if plain == nil {
		pb = []byte("[]")
	}
	fields["patches"] = pb
	yamlBytes, err := json.MarshalIndent(fields, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}

	tmp, err := os.MkdirTemp(root, ".bundle-")
	if err != nil {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("opinions: write bundle: %w", err)
		}
		if tmp, err = os.MkdirTemp(root, ".bundle-"); err != nil {
			return nil, fmt.Errorf("opinions: write bundle: %w", err)
		}
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, doc.Package)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("opinions: write bundle: %w", err)
	}
	write := func(rel string, b []byte) error {
		if msg, _ := checkPatchPath(rel); msg != "" {
			return fmt.Errorf("%w: %s", ErrBundle, msg)
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	if err := write(doc.Name+".yaml", append(yamlBytes, '\n')); err != nil {
		return nil, err
	}
	for _, p := range doc.Patches {
		b, err := base64.StdEncoding.DecodeString(p.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: patch %s: %v", ErrBundle, p.Path, err)
		}
		if err := write(p.Path, b); err != nil {
			return nil, err
		}
	}
	if len(doc.Lock) > 0 && !bytes.Equal(doc.Lock, []byte("null")) {
		l, err := ParseLock(doc.Lock)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBundle, err)
		}
		if err := write(doc.Name+".lock", l.Encode()); err != nil {
			return nil, err
		}
	}
	o, err := Load(filepath.Join(dir, doc.Name+".yaml"), WithGitCommit(false))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	if o.CID() != cid {
		return nil, fmt.Errorf("%w: loads as CID %s, not %s", ErrBundle, o.CID(), cid)
	}
	// Move into place: the package directory's files one by one (other
	// opinions of the package may live there).
	dst := filepath.Join(root, doc.Package)
	if err := copyTree(dir, dst); err != nil {
		return nil, fmt.Errorf("opinions: write bundle: %w", err)
	}
	return Load(filepath.Join(dst, doc.Name+".yaml"), WithGitCommit(false))
}

// copyTree copies regular files from src into dst (created as needed),
// each written to a temporary name and renamed into place.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		tmp := target + ".tmp"
		out, err := os.Create(tmp)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return os.Rename(tmp, target)
	})
}

// IsBundleError reports a bad bundle (the sender's fault).
func IsBundleError(err error) bool { return errors.Is(err, ErrBundle) }
