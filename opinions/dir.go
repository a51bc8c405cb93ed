package opinions

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// LoadDir loads every opinion root/<package>/<name>.yaml. Other files,
// deeper directories (patch directories, testdata) and entries of root that
// are not directories are ignored. It returns the opinions that loaded,
// sorted by package then name, and, if any file failed, an error joining
// each file's error.
func LoadDir(root string, opts ...Option) ([]*Opinion, error) {
	files, err := opinionFiles(root)
	if err != nil {
		return nil, err
	}
	var (
		out  []*Opinion
		errs []error
	)
	for _, f := range files {
		o, err := Load(f, opts...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Package != out[j].Package {
			return out[i].Package < out[j].Package
		}
		return out[i].Name < out[j].Name
	})
	return out, errors.Join(errs...)
}

// opinionFiles lists root/*/*.yaml in lexical order.
func opinionFiles(root string) ([]string, error) {
	pkgs, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("opinions: load dir %s: %w", root, err)
	}
	var files []string
	for _, p := range pkgs {
		if !p.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(root, p.Name()))
		if err != nil {
			return nil, fmt.Errorf("opinions: load dir %s: %w", root, err)
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
				files = append(files, filepath.Join(root, p.Name(), e.Name()))
			}
		}
	}
	return files, nil
}

// FindIn looks ref up in each root in turn (Find) and returns the first
// opinion found: the operator's opinions directory, then the opinions this
// node fetched from peers.
func FindIn(roots []string, ref string, opts ...Option) (*Opinion, error) {
	var err error
	for _, root := range roots {
		var o *Opinion
		if o, err = Find(root, ref, opts...); err == nil || !errors.Is(err, ErrNotFound) {
			return o, err
		}
	}
	return nil, err
}

// Find loads the opinion named by ref under root: "package/name", or a bare
// "name" when exactly one package has an opinion of that name. It returns
// an error wrapping ErrNotFound or ErrAmbiguous when ref names none or
// several, and ErrInvalid when ref is not a well-formed reference.
func Find(root, ref string, opts ...Option) (*Opinion, error) {
	pkg, name, qualified := strings.Cut(ref, "/")
	if !qualified {
		pkg, name = "", ref
	}
	if vocab.CheckOpinionName(name) != nil || (qualified && !vocab.IsPackage(pkg)) {
		return nil, fmt.Errorf("opinions: find %q: %w: want package/name, e.g. hello/o3", ref, ErrInvalid)
	}
	if qualified {
		path := filepath.Join(root, pkg, name+".yaml")
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opinions: find %q: %w: no file %s", ref, ErrNotFound, path)
		}
		return Load(path, opts...)
	}
	matches, err := filepath.Glob(filepath.Join(root, "*", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("opinions: find %q: %w", ref, err)
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("opinions: find %q: %w under %s", ref, ErrNotFound, root)
	case 1:
		return Load(matches[0], opts...)
	}
	refs := make([]string, len(matches))
	for i, m := range matches {
		refs[i] = filepath.Base(filepath.Dir(m)) + "/" + name
	}
	return nil, fmt.Errorf("opinions: find %q: %w: use one of %s", ref, ErrAmbiguous, strings.Join(refs, ", "))
}

// Lint checks opinion files and directories and returns every problem, one
// error per problem (validation problems as *Error), sorted by file and
// line. A directory is linted as a package directory (its *.yaml files) and
// as an opinions root (its */*.yaml files). Lint does not look up git commits.
// An opinion without a lock is a problem: its recipe is not pinned, so
// builders a week apart would build from different inputs.
func Lint(paths ...string) []error {
	var files []string
	var out []error
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			out = append(out, fmt.Errorf("opinions: lint %s: %w", p, err))
			continue
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		direct, _ := filepath.Glob(filepath.Join(p, "*.yaml"))
		nested, err := opinionFiles(p)
		if err != nil {
			out = append(out, err)
		}
		files = append(files, direct...)
		files = append(files, nested...)
	}
	var list ErrorList
	seen := map[string]bool{}
	for _, f := range files {
		if seen[filepath.Clean(f)] {
			continue
		}
		seen[filepath.Clean(f)] = true
		o, err := Load(f, WithGitCommit(false))
		var el ErrorList
		switch {
		case err == nil && o.Lock == nil:
			list = append(list, &Error{File: f, Msg: fmt.Sprintf("no lock (%s): the recipe's inputs are not pinned", filepath.Base(o.LockPath())),
				Hint: fmt.Sprintf("pin them with `lebowski opinion lock %s/%s`", o.Package, o.Name)})
		case err == nil:
		case errors.As(err, &el):
			list = append(list, el...)
		default:
			out = append(out, err)
		}
	}
	list.sort()
	for _, e := range list {
		out = append(out, e)
	}
	return out
}
