package core

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/internal/human"
)

// The one install decision (docs/TRUST.md): `lebowski verify`,
// `lebowski apt-check` and the apt repository ask Decide and render its
// answer; none of them decides by itself.

// DecideRequest is what the caller knows about one file a user is about
// to install: its hash and control data, the opinion it claims, and this
// node's own rebuild of its recipe, if one was made.
type DecideRequest struct {
	File   string `json:"file"`   // the path or name given (messages)
	SHA256 string `json:"sha256"` // "" when the file could not be read
	// Problem, when set, is why the file cannot be treated as a package
	// for this machine. Damaged says it is a damaged or tampered copy (a
	// red flag is raised when its hash differs from the consensus);
	// otherwise it is foreign (another architecture, a version no
	// Lebowski build carries): no red flag.
	Problem string `json:"problem,omitempty"`
	Damaged bool   `json:"damaged,omitempty"`
	// The file's control data, when intact: source package, binary
	// package, binary version, the Debian version it was built from and
	// its canonical file name. A Problem without Package asks about the
	// bare hash.
	Package       string `json:"package,omitempty"`
	BinaryPackage string `json:"binary_package,omitempty"`
	Version       string `json:"version,omitempty"`
	DebianVersion string `json:"debian_version,omitempty"`
	FileName      string `json:"file_name,omitempty"`
	// Opinion is the opinion the file was built under (as the user's
	// opinions directory or a peer defines it); nil: a vanilla build.
	Opinion *OpinionFacts `json:"opinion,omitempty"`
	// Own is this node's rebuild of the recipe; nil when none was made.
	Own *OwnBuild `json:"own,omitempty"`
	// RecipeID, when set, asks about that recipe's consensus only (the
	// apt repository, which serves the files of one recipe).
	RecipeID string `json:"recipe_id,omitempty"`
}

// OpinionFacts identify an opinion.
type OpinionFacts struct {
	Package       string `json:"package"`
	Name          string `json:"name"`
	CID           string `json:"cid"`
	BinaryVersion string `json:"binary_version"` // the version its builds carry
}

// OwnBuild is this node's rebuild of a file's recipe.
type OwnBuild struct {
	// SHA256 of the rebuilt file of the request's FileName; "" when the
	// rebuild produced no such file.
	SHA256       string `json:"sha256,omitempty"`
	RecipeID     string `json:"recipe_id,omitempty"`
	SourceSHA256 string `json:"source_sha256,omitempty"`
	ImageDigest  string `json:"image_digest,omitempty"`
}

// Check is one line of a decision: what was compared and how it came out.
type Check struct {
	OK     bool   `json:"ok"`
	What   string `json:"what"`
	Detail string `json:"detail"`
}

// Decision is the whole answer about one file: the checks made, the
// verdict and its reasons, the hash expected when it differs, the
// consensus it rests on, and the red flag it warrants (signed unless the
// user declines: --no-report).
type Decision struct {
	File      string            `json:"file"`
	SHA256    string            `json:"sha256"`
	Package   string            `json:"package"`
	Version   string            `json:"version"`
	Opinion   string            `json:"opinion,omitempty"`
	Checks    []Check           `json:"checks"`
	Expected  string            `json:"expected,omitempty"`
	Verdict   consensus.Verdict `json:"decision"`
	Reasons   []string          `json:"reasons"`
	Consensus *VerifyResult     `json:"consensus,omitempty"`
	RedFlag   *Mismatch         `json:"red_flag,omitempty"`
}

// Decide answers whether a file may be installed, asking Verify for the
// consensus the decision rests on.
func (n *Node) Decide(ctx context.Context, req DecideRequest) (*Decision, error) {
	switch {
	case req.SHA256 != "" && !vocab.IsSHA256Hex(req.SHA256):
		return nil, Invalid(fmt.Errorf("decide: sha256 %q is not 64 lower-case hex digits", human.Short(req.SHA256, 80)))
	case req.Problem == "" && req.SHA256 == "":
		return nil, Invalid(errors.New("decide: a readable file needs its sha256 (or say the problem that kept it from being read)"))
	}
	vreq, ask := req.verifyRequest()
	var vr *VerifyResult
	if ask {
		var err error
		if vr, err = n.Verify(ctx, vreq); err != nil {
			return nil, err
		}
	}
	return judge(req, vr), nil
}

// ConsensusFile is the request about a file of a recipe's consensus, as
// `lebowski verify --no-rebuild` of that file asks it, pinned to the
// recipe: what the apt repository serves and the status page shows.
func ConsensusFile(ri RecipeInfo, a attest.Artifact) DecideRequest {
	r := ri.Recipe
	req := DecideRequest{File: a.Name, SHA256: a.SHA256, Package: r.Package, BinaryPackage: r.Package, Version: r.Version,
		DebianVersion: r.DebianVersion, FileName: a.Name, RecipeID: r.RecipeID}
	if op := r.Opinion; op.Name != "" && op.Name != vocab.Vanilla {
		req.Opinion = &OpinionFacts{Package: r.Package, Name: op.Name, CID: op.CID, BinaryVersion: r.Version}
	}
	return req
}

// verifyRequest is the consensus question the decision needs, if any.
func (req DecideRequest) verifyRequest() (VerifyRequest, bool) {
	switch {
	case req.SHA256 == "":
		return VerifyRequest{}, false
	case req.Problem != "" && req.Package == "":
		return VerifyRequest{SHA256: req.SHA256}, true
	case req.Problem == "" && req.Opinion != nil && req.Opinion.BinaryVersion != req.Version:
		return VerifyRequest{}, false // decided by the opinion alone
	}
	vr := VerifyRequest{Package: req.Package, BinaryPackage: req.BinaryPackage, DebianVersion: req.DebianVersion,
		Opinion: vocab.Vanilla, RecipeID: req.RecipeID, FileName: req.FileName, SHA256: req.SHA256}
	if req.Opinion != nil {
		// Only claims about this exact opinion content count.
		vr.Opinion, vr.OpinionCID = req.Opinion.Name, req.Opinion.CID
	}
	return vr, true
}

// judge is the decision for req given the consensus vr (nil when none was
// asked: an unreadable file, or a version the opinion does not give).
func judge(req DecideRequest, vr *VerifyResult) *Decision {
	d := &Decision{File: req.File, SHA256: req.SHA256, Package: req.BinaryPackage, Version: req.Version, Consensus: vr}
	if req.Problem != "" {
		return d.unusable(req, vr)
	}
	add := func(ok bool, what, detail string) { d.Checks = append(d.Checks, Check{ok, what, detail}) }
	if op := req.Opinion; op != nil {
		d.Opinion = op.Name
		if op.BinaryVersion != req.Version {
			add(false, "Opinion definition", fmt.Sprintf("%s/%s gives version %s, the file is %s", op.Package, op.Name, op.BinaryVersion, req.Version))
			return d.decide(consensus.DoNotInstall, "the file's version does not match the opinion")
		}
		add(true, "Opinion definition", fmt.Sprintf("%s/%s (cid %s)", op.Package, op.Name, op.CID))
	}
	own := req.Own
	if own != nil && own.RecipeID != "" {
		if vr.Recipe != nil {
			cr := vr.Recipe.Recipe
			add(cr.SourceSHA256 == own.SourceSHA256, "Debian source", fmt.Sprintf("%s %s (SHA256 %s, builders: %s)", req.Package, req.DebianVersion, human.Short(own.SourceSHA256, 16), matchWord(cr.SourceSHA256 == own.SourceSHA256)))
			add(cr.ImageDigest == own.ImageDigest, "Container", fmt.Sprintf("%s (digest %s)", human.Short(own.ImageDigest, 23), matchWord(cr.ImageDigest == own.ImageDigest)))
		} else {
			add(true, "Debian source", fmt.Sprintf("%s %s (SHA256 %s, verified against Debian's signed archive)", req.Package, req.DebianVersion, human.Short(own.SourceSHA256, 16)))
			add(true, "Container", fmt.Sprintf("%s (rebuilt from manifest)", human.Short(own.ImageDigest, 23)))
		}
	}
	sum := human.Short(req.SHA256, 16)
	switch {
	case own != nil && own.SHA256 != "" && own.SHA256 != req.SHA256:
		add(false, "Package SHA256", fmt.Sprintf("%s of %s", sum, filepath.Base(req.File)))
		d.Expected = own.SHA256
		d.RedFlag = &Mismatch{RecipeID: own.RecipeID, File: req.FileName, Observed: req.SHA256, Expected: own.SHA256, Reason: "verify: differs from the reporter's own rebuild"}
		return d.decide(consensus.DoNotInstall, append([]string{"the file differs from this node's own rebuild"}, vr.Reasons...)...)
	case own != nil && own.SHA256 == "":
		add(false, "Package SHA256", fmt.Sprintf("the rebuild produced no %s", req.FileName))
		return d.decide(consensus.DoNotInstall, "the rebuild did not produce this file")
	case vr.Verdict == consensus.DoNotInstall:
		add(false, "Package SHA256", fmt.Sprintf("%s (builders disagree or report another hash)", sum))
		d.Expected = vr.Expected
		if vr.Expected != "" && vr.Recipe != nil {
			d.RedFlag = &Mismatch{RecipeID: vr.Recipe.Recipe.RecipeID, File: req.FileName, Observed: req.SHA256, Expected: vr.Expected, Reason: "verify: differs from the consensus of trusted builders"}
		}
		return d.decide(consensus.DoNotInstall, vr.Reasons...)
	case own != nil:
		detail := sum + " (matches this node's rebuild"
		if vr.Verdict == consensus.Safe {
			detail += fmt.Sprintf(" and the consensus of %d trusted builders", len(vr.Recipe.Report.Consensus.Trusted))
		}
		add(true, "Package SHA256", detail+")")
		return d.decide(consensus.Safe, append([]string{"bit-identical to this node's own rebuild"}, vr.Reasons...)...)
	}
	add(vr.Verdict == consensus.Safe, "Package SHA256", sum+" (consensus only, no local rebuild)")
	return d.decide(vr.Verdict, vr.Reasons...)
}

// unusable decides DO NOT INSTALL for a file that cannot be treated as a
// package for this machine, saying what the network attests for it: for
// the package and version its intact control data names, else for its
// bare hash.
func (d *Decision) unusable(req DecideRequest, vr *VerifyResult) *Decision {
	d.Checks = append(d.Checks, Check{false, "Package file", req.Problem})
	if req.Opinion != nil {
		d.Opinion = req.Opinion.Name
	}
	reasons := []string{fmt.Sprintf("%s: %s", filepath.Base(req.File), req.Problem)}
	if vr == nil {
		return d.decide(consensus.DoNotInstall, reasons...)
	}
	switch {
	case vr.Expected != "" && vr.Expected != req.SHA256:
		d.Expected = vr.Expected
		reasons = append(reasons, vr.Reasons...)
		if req.Damaged && vr.Recipe != nil {
			file := req.FileName
			if file == "" {
				file = vr.File
			}
			d.RedFlag = &Mismatch{RecipeID: vr.Recipe.Recipe.RecipeID, File: file, Observed: req.SHA256, Expected: vr.Expected,
				Reason: "verify: a damaged or tampered copy (" + req.Problem + ")"}
		}
	case vr.File != "":
		reasons = append(reasons, fmt.Sprintf("sha256 %s is attested as %s (%s)", human.Short(req.SHA256, 16), vr.File, vr.Verdict))
	default:
		reasons = append(reasons, vr.Reasons...)
	}
	return d.decide(consensus.DoNotInstall, reasons...)
}

func (d *Decision) decide(v consensus.Verdict, reasons ...string) *Decision {
	d.Verdict, d.Reasons = v, reasons
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	return d
}

func matchWord(ok bool) string {
	if ok {
		return "match"
	}
	return "MISMATCH"
}
