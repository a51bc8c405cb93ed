// Package repo serves a node's verified packages as a standard apt
// repository: dists/lebowski/{InRelease,Release} (InRelease signed with
// the node's builder key), dists/lebowski/main/binary-amd64/Packages and
// pool/ files served by sha256 from the node's blobs (docs/APT.md).
package repo

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Suite, component and architecture of the repository.
const (
	Suite     = "lebowski"
	Component = "main"
	Arch      = "amd64"
)

// Package is one .deb the repository lists.
type Package struct {
	Name     string `json:"name"` // file name
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	RecipeID string `json:"recipe_id"`
	// Control is the .deb's control paragraph, as dpkg-deb wrote it.
	Control []byte `json:"-"`
}

// Pool is the path a package is served under.
func (p Package) Pool() string {
	return path.Join("pool", Component, p.SHA256[:2], p.SHA256, p.Name)
}

// Index is one generation of the repository's metadata.
type Index struct {
	Packages, Release, InRelease []byte
	files                        map[string]Package // pool path → package
	list                         []Package
}

// List returns the packages, sorted by file name.
func (x *Index) List() []Package { return append([]Package(nil), x.list...) }

// Build makes the metadata for pkgs, signing InRelease with id.
func Build(pkgs []Package, id *attest.Identity, now time.Time) (*Index, error) {
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	x := &Index{files: map[string]Package{}}
	var b bytes.Buffer
	for _, p := range pkgs {
		if !vocab.IsSHA256Hex(p.SHA256) || vocab.CheckFileName(p.Name) != nil {
			return nil, fmt.Errorf("repo: bad package %q %q", p.Name, p.SHA256)
		}
		if _, dup := x.files[p.Pool()]; dup {
			continue
		}
		ctl := bytes.TrimRight(p.Control, "\n")
		for _, line := range bytes.Split(ctl, []byte("\n")) {
			// Fields apt must take from the repository, not from the file.
			if f, _, _ := strings.Cut(string(line), ":"); isRepoField(f) {
				continue
			}
			b.Write(line)
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "Filename: %s\nSize: %d\nSHA256: %s\n\n", p.Pool(), p.Size, p.SHA256)
		x.files[p.Pool()] = p
		x.list = append(x.list, p)
	}
	x.Packages = b.Bytes()
	ph := vocab.SHA256Hex(x.Packages)
	x.Release = []byte(fmt.Sprintf("Origin: Lebowski\nLabel: Lebowski verified packages (%s)\nSuite: %s\nCodename: %s\nDate: %s\nArchitectures: %s\nComponents: %s\nDescription: packages this Lebowski node found SAFE TO INSTALL by consensus\nSHA256:\n %s %d %s/binary-%s/Packages\n",
		id.Fingerprint(), Suite, Suite, now.UTC().Format(time.RFC1123Z), Arch, Component, ph, len(x.Packages), Component, Arch))
	var err error
	if x.InRelease, err = attest.ClearSign(id, x.Release); err != nil {
		return nil, err
	}
	return x, nil
}

func isRepoField(f string) bool {
	switch strings.ToLower(strings.TrimSpace(f)) {
	case "filename", "size", "sha256", "md5sum", "sha1", "sha512":
		return true
	}
	return false
}

// Blobs returns a pool file's bytes by sha256.
type Blobs func(ctx context.Context, sha256hex string) ([]byte, error)

// Server serves the current Index over HTTP.
type Server struct {
	mu    sync.RWMutex
	idx   *Index
	blobs Blobs
	key   string // armored public key, served as /lebowski.asc
}

// NewServer serves files from blobs; key is the armored signing key.
func NewServer(blobs Blobs, key string) *Server { return &Server{blobs: blobs, key: key} }

// Set publishes a new index.
func (s *Server) Set(x *Index) { s.mu.Lock(); s.idx = x; s.mu.Unlock() }

// Index is the published index (nil before the first Set).
func (s *Server) Index() *Index { s.mu.RLock(); defer s.mu.RUnlock(); return s.idx }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only repository", http.StatusMethodNotAllowed)
		return
	}
	x := s.Index()
	if x == nil {
		http.Error(w, "repository not ready yet", http.StatusServiceUnavailable)
		return
	}
	p := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	var body []byte
	ctype := "text/plain; charset=utf-8"
	switch p {
	case "dists/" + Suite + "/InRelease":
		body = x.InRelease
	case "dists/" + Suite + "/Release":
		body = x.Release
	case "dists/" + Suite + "/" + Component + "/binary-" + Arch + "/Packages":
		body = x.Packages
	case "lebowski.asc":
		body = []byte(s.key)
	default:
		pkg, ok := x.files[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		data, err := s.blobs(r.Context(), pkg.SHA256)
		if err != nil || vocab.SHA256Hex(data) != pkg.SHA256 {
			http.Error(w, "package file not available on this node", http.StatusNotFound)
			return
		}
		body, ctype = data, "application/vnd.debian.binary-package"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}
