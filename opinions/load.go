package opinions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	"gopkg.in/yaml.v3"
)

// Limits on the files the loader reads.
const (
	MaxFileSize  = 64 << 10 // an opinion file
	MaxPatchSize = 1 << 20  // one patch file
	MaxPatches   = 64       // patches in one opinion
	MaxListLen   = 64       // entries in any flag/option/argument list
	MaxItemLen   = 256      // bytes in one flag/option/argument
	MaxSummary   = 200      // bytes in the summary
)

// Option configures Load, LoadDir and Find.
type Option func(*config)

type config struct {
	logger *slog.Logger
	git    bool
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithGitCommit turns filling Opinion.Commit from git on or off (default on).
// The lookup is best effort: it never makes Load fail.
func WithGitCommit(on bool) Option { return func(c *config) { c.git = on } }

func newConfig(opts []Option) *config {
	c := &config{logger: slog.New(slog.DiscardHandler), git: true}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Load reads, strictly decodes and validates one opinion file, which must
// live at <dir>/<package>/<name>.yaml. Every problem in the file is
// reported, as an ErrorList (each *Error unwraps to ErrInvalid) sorted by
// line. I/O failures (missing file, permissions) are returned wrapped, with
// "opinions: load <path>:" as prefix, and are not ErrInvalid.
func Load(path string, opts ...Option) (*Opinion, error) {
	cfg := newConfig(opts)
	data, err := readOpinionFile(path)
	if err != nil {
		return nil, err
	}
	o, err := parse(path, data)
	if err != nil {
		cfg.logger.Debug("opinion rejected", "path", path, "err", err)
		return nil, err
	}
	if cfg.git {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		o.Commit = gitCommit(ctx, path, cfg.logger)
		cancel()
	}
	cfg.logger.Debug("opinion loaded", "path", path, "ref", o.Package+"/"+o.Name, "cid", o.CID())
	return o, nil
}

// readOpinionFile returns the bytes of a regular file of at most
// MaxFileSize bytes.
func readOpinionFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("opinions: load %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, ErrorList{{File: path, Msg: fmt.Sprintf("not a regular file (%s)", fi.Mode().Type()),
			Hint: "opinion files must be plain files, not symlinks or devices"}}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opinions: load %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("opinions: load %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, ErrorList{{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize),
			Hint: "an opinion is a short YAML file; put large changes in patch files"}}
	}
	return data, nil
}

// loader holds the state of decoding one file.
type loader struct {
	file string
	dir  string
	errs ErrorList
	pos  map[string]*yaml.Node // field path -> value node, for fields that decoded
	o    Opinion
}

func (l *loader) add(n *yaml.Node, field, msg, hint string) {
	e := &Error{File: l.file, Field: field, Msg: msg, Hint: hint}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	l.errs = append(l.errs, e)
}

// addAt reports a problem at the recorded position of field (or of its
// nearest recorded parent, or the top of the file).
func (l *loader) addAt(field, msg, hint string) {
	l.add(l.node(field), field, msg, hint)
}

func (l *loader) node(field string) *yaml.Node {
	for p := field; p != ""; {
		if n, ok := l.pos[p]; ok {
			return n
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return nil
}

var reYAMLLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse decodes and validates data read from file.
func parse(file string, data []byte) (o *Opinion, err error) {
	l := &loader{file: file, dir: filepath.Dir(file), pos: map[string]*yaml.Node{}}
	defer func() {
		// yaml.v3 has had panics on malformed input; bad input never panics here.
		if r := recover(); r != nil {
			o, err = nil, ErrorList{{File: file, Msg: fmt.Sprintf("malformed YAML (%v)", r), Hint: "check the file's syntax"}}
		}
	}()

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.add(nil, "", "file is empty", "start from docs/OPINIONS.md's example")
		} else {
			l.yamlError(err)
		}
		return nil, l.errs
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		l.add(&extra, "", "more than one YAML document in the file", "one opinion per file; remove the '---' separator and what follows")
		return nil, l.errs
	case !errors.Is(err, io.EOF):
		l.yamlError(err)
		return nil, l.errs
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		l.add(&doc, "", "not a YAML document", "")
		return nil, l.errs
	}
	root := doc.Content[0]
	if l.checkPlain(root, ""); len(l.errs) > 0 {
		l.errs.sort()
		return nil, l.errs
	}

	l.walk(root)
	l.validate()
	if len(l.errs) > 0 {
		l.errs.sort()
		return nil, l.errs
	}
	l.crossCheck(data)
	if len(l.errs) > 0 {
		return nil, l.errs
	}
	out := l.o
	out.normalize()
	out.Path = file
	out.Dir = l.dir
	if err := out.loadLock(); err != nil {
		return nil, err
	}
	return &out, nil
}

// loadLock reads <name>.lock beside the file, if there is one, and checks
// that it pins this opinion's package, name, suite and version.
func (o *Opinion) loadLock() error {
	p := o.LockPath()
	l, err := ReadLock(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return ErrorList{{File: p, Msg: err.Error(), Hint: "regenerate it with `lebowski opinion lock " + o.Package + "/" + o.Name + "`"}}
	}
	var bad []string
	for _, c := range []struct{ field, lock, opinion string }{
		{"package", l.Package, o.Package}, {"opinion", l.Opinion, o.Name},
		{"suite", l.Suite, o.Debian.Suite}, {"source.version", l.Source.Version, o.Debian.Version},
	} {
		if c.lock != c.opinion {
			bad = append(bad, fmt.Sprintf("%s is %q, the opinion says %q", c.field, c.lock, c.opinion))
		}
	}
	if len(bad) > 0 {
		return ErrorList{{File: p, Msg: "lock is for another recipe: " + strings.Join(bad, "; "), Hint: "regenerate it with `lebowski opinion lock " + o.Package + "/" + o.Name + "`"}}
	}
	o.Lock = l
	return nil
}

func (l *loader) yamlError(err error) {
	msg := err.Error()
	line := 0
	if m := reYAMLLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Msg: "YAML syntax: " + msg,
		Hint: "check indentation and quoting; see docs/OPINIONS.md"})
}

// checkPlain rejects anchors, aliases (billion laughs) and explicit tags
// anywhere in the tree: an opinion is plain YAML.
func (l *loader) checkPlain(n *yaml.Node, path string) {
	switch {
	case n.Kind == yaml.AliasNode:
		l.add(n, path, "YAML alias *"+n.Value+" is not allowed", "write the value out in full")
		return
	case n.Anchor != "":
		l.add(n, path, "YAML anchor &"+n.Anchor+" is not allowed", "remove the anchor; opinions are plain YAML")
	case n.Style&yaml.TaggedStyle != 0:
		l.add(n, path, "explicit YAML tag "+n.Tag+" is not allowed", "remove the tag")
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			l.checkPlain(n.Content[i], path)
			l.checkPlain(n.Content[i+1], joinPath(path, n.Content[i].Value))
		}
		return
	}
	for i, c := range n.Content {
		l.checkPlain(c, fmt.Sprintf("%s[%d]", path, i))
	}
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// field is one known key of a mapping.
type field struct {
	key      string
	required bool
	decode   func(path string, v *yaml.Node)
}

// mapping decodes a mapping node whose keys must be among fields.
func (l *loader) mapping(path string, n *yaml.Node, fields []field) {
	if n.Kind != yaml.MappingNode {
		name := path
		if name == "" {
			name = "the file"
		}
		l.add(n, path, fmt.Sprintf("%s must be a mapping of key: value lines, not %s", name, kindName(n)), "see docs/OPINIONS.md for the layout")
		return
	}
	known := make([]string, len(fields))
	for i, f := range fields {
		known[i] = f.key
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			l.add(k, path, "keys must be plain words", "")
			continue
		}
		p := joinPath(path, k.Value)
		var f *field
		for j := range fields {
			if fields[j].key == k.Value {
				f = &fields[j]
			}
		}
		switch {
		case f == nil:
			l.add(k, p, fmt.Sprintf("unknown field %q", k.Value), "known fields here: "+strings.Join(known, ", "))
		case seen[k.Value]:
			l.add(k, p, "field is given twice", "remove one of them")
		default:
			seen[k.Value] = true
			l.pos[p] = v
			f.decode(p, v)
		}
	}
	for _, f := range fields {
		if f.required && !seen[f.key] {
			l.add(n, joinPath(path, f.key), "required field is missing", "add "+f.key+": (see docs/OPINIONS.md)")
		}
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "null"
		}
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "that"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func (l *loader) str(dst *string) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		if v.Kind != yaml.ScalarNode || isNull(v) || v.ShortTag() == "!!binary" {
			l.add(v, p, "must be a string, not "+kindName(v), "")
			delete(l.pos, p)
			return
		}
		*dst = v.Value
	}
}

func (l *loader) integer(p string, v *yaml.Node) (int64, bool) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		l.add(v, p, "must be an integer, not "+kindName(v), "")
		delete(l.pos, p)
		return 0, false
	}
	var i int64
	if err := v.Decode(&i); err != nil {
		l.add(v, p, fmt.Sprintf("integer %s is out of range", v.Value), "")
		delete(l.pos, p)
		return 0, false
	}
	return i, true
}

// strList decodes a list of strings; null means empty.
func (l *loader) strList(dst *[]string) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		if isNull(v) {
			return
		}
		if v.Kind != yaml.SequenceNode {
			l.add(v, p, "must be a list, not "+kindName(v), "write [] for none, or one '- item' per line")
			delete(l.pos, p)
			return
		}
		if len(v.Content) > MaxListLen {
			l.add(v, p, fmt.Sprintf("list has %d entries, more than %d", len(v.Content), MaxListLen), "")
		}
		out := make([]string, 0, len(v.Content))
		for i, item := range v.Content {
			ip := fmt.Sprintf("%s[%d]", p, i)
			if item.Kind != yaml.ScalarNode || isNull(item) || item.ShortTag() == "!!binary" {
				l.add(item, ip, "must be a string, not "+kindName(item), "")
				out = append(out, "") // keep indexes aligned with positions
				continue
			}
			l.pos[ip] = item
			out = append(out, item.Value)
		}
		*dst = out
	}
}

func (l *loader) flags(dst *Flags) func(string, *yaml.Node) {
	return func(p string, v *yaml.Node) {
		if isNull(v) {
			return
		}
		l.mapping(p, v, []field{{key: "append", decode: l.strList(&dst.Append)}})
	}
}

// walk decodes the document root into l.o, recording positions and
// reporting every shape problem (unknown keys, wrong types, missing fields).
func (l *loader) walk(root *yaml.Node) {
	o := &l.o
	l.mapping("", root, []field{
		{key: "name", required: true, decode: l.str(&o.Name)},
		{key: "package", required: true, decode: l.str(&o.Package)},
		{key: "summary", required: true, decode: l.str(&o.Summary)},
		{key: "purity", required: true, decode: func(p string, v *yaml.Node) {
			var s string
			l.str(&s)(p, v)
			o.Purity = vocab.Purity(s)
		}},
		{key: "debian", required: true, decode: func(p string, v *yaml.Node) {
			l.mapping(p, v, []field{
				{key: "suite", required: true, decode: l.str(&o.Debian.Suite)},
				{key: "version", required: true, decode: l.str(&o.Debian.Version)},
			})
		}},
		{key: "revision", required: true, decode: func(p string, v *yaml.Node) {
			if i, ok := l.integer(p, v); ok {
				if i < 1 || i > vocab.MaxRevision {
					l.add(v, p, fmt.Sprintf("revision %d is out of range 1..%d", i, vocab.MaxRevision), "start at 1 and add 1 for every change to the opinion")
					delete(l.pos, p)
					return
				}
				o.Revision = int(i)
			}
		}},
		{key: "build", decode: func(p string, v *yaml.Node) {
			if isNull(v) {
				return
			}
			b := &o.Build
			l.mapping(p, v, []field{
				{key: "cflags", decode: l.flags(&b.CFlags)},
				{key: "cxxflags", decode: l.flags(&b.CXXFlags)},
				{key: "ldflags", decode: l.flags(&b.LDFlags)},
				{key: "build_options", decode: l.strList(&b.BuildOptions)},
				{key: "configure_args", decode: l.strList(&b.ConfigureArgs)},
			})
		}},
		{key: "patches", decode: func(p string, v *yaml.Node) {
			if isNull(v) {
				return
			}
			if v.Kind != yaml.SequenceNode {
				l.add(v, p, "must be a list, not "+kindName(v), "write [] for none, or '- {path: …, sha256: …}' per patch")
				delete(l.pos, p)
				return
			}
			if len(v.Content) > MaxPatches {
				l.add(v, p, fmt.Sprintf("%d patches, more than %d", len(v.Content), MaxPatches), "")
			}
			o.Patches = make([]Patch, len(v.Content))
			for i, item := range v.Content {
				ip := fmt.Sprintf("%s[%d]", p, i)
				l.pos[ip] = item
				pt := &o.Patches[i]
				l.mapping(ip, item, []field{
					{key: "path", required: true, decode: l.str(&pt.Path)},
					{key: "sha256", required: true, decode: l.str(&pt.SHA256)},
				})
			}
		}},
		{key: "source_date_epoch", decode: func(p string, v *yaml.Node) {
			if isNull(v) {
				return
			}
			if i, ok := l.integer(p, v); ok {
				o.SourceDateEpoch = &i
			}
		}},
	})
}

// crossCheck decodes the file a second time with yaml.v3's own strict
// decoder (KnownFields) and requires it to agree with the walker. A
// disagreement is a loader bug, reported rather than trusted.
func (l *loader) crossCheck(data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var got Opinion
	if err := dec.Decode(&got); err != nil {
		l.add(nil, "", "internal: strict decoder rejected the file: "+err.Error(), "please report this as a lebowski bug")
		return
	}
	got.normalize()
	want := l.o
	want.normalize()
	want.patchData = nil // read from the patch files, not from this file
	if !reflect.DeepEqual(got, want) {
		l.add(nil, "", "internal: strict decoder disagrees with the field walker", "please report this as a lebowski bug")
	}
}

// normalize turns nil slices into empty ones so equal content compares equal.
func (o *Opinion) normalize() {
	for _, s := range []*[]string{&o.Build.CFlags.Append, &o.Build.CXXFlags.Append, &o.Build.LDFlags.Append,
		&o.Build.BuildOptions, &o.Build.ConfigureArgs} {
		if *s == nil {
			*s = []string{}
		}
	}
	if o.Patches == nil {
		o.Patches = []Patch{}
	}
}
