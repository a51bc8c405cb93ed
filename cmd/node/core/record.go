package core

import (
	"context"
	"fmt"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/builder"
	"github.com/lebowski-dist/lebowski/opinions"
	"github.com/lebowski-dist/lebowski/store"
)

// Record turns a build into a claim on the node behind api: it keeps the
// artifacts, buildinfo and log as blobs, then RecordBuild signs, stores and
// publishes the claim. It is the one path from builder.Result to claim,
// used by `lebowski build`, `lebowski verify` and the daemon alike, with or
// without a running daemon.
func Record(ctx context.Context, api API, res *builder.Result, op *opinions.Opinion) (*RecordResult, error) {
	rec := BuildRecord{
		Recipe: res.Recipe, BinaryVersion: res.BinaryVersion, Opinion: builder.OpinionRef(op),
		Status: res.Status, FailReason: res.FailReason, Artifacts: []attest.Artifact{},
	}
	if res.Status == attest.ResultSuccess || res.Status == attest.ResultUnreproducible {
		// An unreproducible claim names both builds' files; they are kept
		// too, so others can compare them.
		var err error
		if rec.Artifacts, err = keepOutputs(ctx, api, res.Artifacts); err != nil {
			return nil, err
		}
		if res.Status == attest.ResultUnreproducible && len(res.Second) > 0 {
			if rec.SecondArtifacts, err = keepOutputs(ctx, api, res.Second); err != nil {
				return nil, err
			}
		}
	}
	if len(res.Diffoscope) > 0 && res.Status == attest.ResultUnreproducible {
		c, err := api.PutBlob(ctx, res.Diffoscope)
		if err != nil {
			return nil, fmt.Errorf("record build: keep diffoscope report: %w", err)
		}
		rec.DiffoscopeCID = c
	}
	var err error
	if op != nil {
		// Keep the opinion's bundle too: peers fetch it by the CID the
		// claim names.
		c, err := api.PutBlob(ctx, op.Canonical())
		if err != nil {
			return nil, fmt.Errorf("record build: keep opinion bundle: %w", err)
		}
		if c != op.CID() {
			return nil, fmt.Errorf("record build: opinion bundle of %s/%s has CID %s, not %s", op.Package, op.Name, c, op.CID())
		}
	}
	if len(res.Buildinfo) > 0 {
		if rec.BuildinfoCID, err = api.PutBlob(ctx, res.Buildinfo); err != nil {
			return nil, fmt.Errorf("record build: keep buildinfo: %w", err)
		}
	}
	if len(res.Log) > 0 {
		if rec.LogCID, err = api.PutBlob(ctx, res.Log); err != nil {
			return nil, fmt.Errorf("record build: keep build log: %w", err)
		}
	}
	if res.Lock != nil {
		if rec.LockCID, err = api.PutBlob(ctx, res.Lock.Canonical()); err != nil {
			return nil, fmt.Errorf("record build: keep lock: %w", err)
		}
	}
	out, err := api.RecordBuild(ctx, rec)
	if err != nil {
		return nil, err
	}
	out.DiffoscopeCID = rec.DiffoscopeCID
	return out, nil
}

// keepOutputs puts each build output as a blob and returns its artifact
// entries, checking the file still has the hash the build reported.
func keepOutputs(ctx context.Context, api API, outs []builder.Output) ([]attest.Artifact, error) {
	arts := []attest.Artifact{}
	for _, a := range outs {
		data, err := os.ReadFile(a.Path)
		if err != nil {
			return nil, fmt.Errorf("record build: read artifact %s: %w", a.Name, err)
		}
		c, err := api.PutBlob(ctx, data)
		if err != nil {
			return nil, fmt.Errorf("record build: keep artifact %s: %w", a.Name, err)
		}
		if want, _ := vocab.CIDOfSHA256Hex(a.SHA256); c != want {
			return nil, fmt.Errorf("record build: artifact %s changed on disk since the build (sha256 %s expected)", a.Path, a.SHA256)
		}
		arts = append(arts, attest.Artifact{Name: a.Name, SHA256: a.SHA256})
	}
	return arts, nil
}

// RecordBuild signs the build with the node's key, stores the claim once,
// marks it as the node's own and publishes it when online.
func (n *Node) RecordBuild(ctx context.Context, b BuildRecord) (*RecordResult, error) {
	if n.id == nil {
		return nil, fmt.Errorf("record build: %w on this node: run `lebowski key gen`", ErrNoIdentity)
	}
	stmt := &attest.Statement{
		Type: attest.TypeRebuildV1, Package: b.Recipe.Source, Version: b.BinaryVersion, DebianVersion: b.Recipe.DebianVersion,
		Suite: b.Recipe.Suite, Arch: b.Recipe.Arch, Opinion: b.Opinion,
		DebianSourceSHA256: b.Recipe.SourceSHA256, ContainerDigest: b.Recipe.ImageDigest, RecipeID: b.Recipe.ID(),
		Result: b.Status, Artifacts: b.Artifacts, BuildinfoCID: b.BuildinfoCID, LogCID: b.LogCID, LockCID: b.LockCID,
		Builder: n.id.Fingerprint(), Timestamp: n.now(), Reason: OneLine(b.FailReason),
	}
	if b.Status == attest.ResultUnreproducible {
		stmt.SecondArtifacts, stmt.DiffoscopeCID = b.SecondArtifacts, b.DiffoscopeCID
	}
	if stmt.Artifacts == nil {
		stmt.Artifacts = []attest.Artifact{}
	}
	if b.Opinion.CID != b.Recipe.OpinionCID {
		return nil, Invalid(fmt.Errorf("record build: opinion CID %q differs from the recipe's %q", b.Opinion.CID, b.Recipe.OpinionCID))
	}
	if n.net != nil {
		stmt.PeerID = n.net.PeerID()
	}
	if err := stmt.Validate(n.now(), attest.DefaultSkew); err != nil {
		return nil, Invalid(fmt.Errorf("record build: %w", err))
	}
	if err := n.checkBlobs(b); err != nil {
		return nil, err
	}
	out, err := n.signAndPublish(ctx, stmt, true)
	if err != nil {
		return nil, fmt.Errorf("record build: %w", err)
	}
	return out, nil
}

// OneLine makes free text a statement reason: control characters become
// spaces, at most attest.MaxStringField bytes of valid UTF-8.
func OneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	s = strings.Join(strings.Fields(s), " ")
	for len(s) > attest.MaxStringField {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// signAndPublish signs stmt with the node key, ingests the claim once
// (marked as the node's own build when own), emits it and publishes it
// when online.
func (n *Node) signAndPublish(ctx context.Context, stmt *attest.Statement, own bool) (*RecordResult, error) {
	if err := n.usableOwnKey("sign"); err != nil {
		return nil, err
	}
	claim, err := attest.Sign(n.id, stmt)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	r, err := n.ingest(ctx, store.Origin{Via: store.ViaOwn}, claim)
	if err != nil {
		return nil, err
	}
	if r[0].Err != nil {
		return nil, fmt.Errorf("store own claim: %w", r[0].Err)
	}
	if own {
		if err := n.st.MarkOwn(claim.ID); err != nil {
			return nil, err
		}
	}
	wire, err := claim.Wire()
	if err != nil {
		return nil, err
	}
	out := &RecordResult{ID: claim.ID, Wire: wire}
	if n.net != nil {
		if err := n.net.Publish(ctx, claim); err != nil {
			n.log.Warn("publish own claim", "claim", claim.ID, "err", err)
		} else {
			out.Published = true
		}
	}
	return out, nil
}

// checkBlobs makes sure the node holds every blob the claim will name, so
// peers can fetch them knowing only the claim.
func (n *Node) checkBlobs(b BuildRecord) error {
	need := map[string]string{}
	if b.Status == attest.ResultSuccess {
		for _, a := range b.Artifacts {
			c, err := vocab.CIDOfSHA256Hex(a.SHA256)
			if err != nil {
				return Invalid(fmt.Errorf("record build: artifact %s: %w", a.Name, err))
			}
			need[c] = "artifact " + a.Name
		}
	}
	for c, what := range map[string]string{b.BuildinfoCID: "buildinfo", b.LogCID: "build log", b.LockCID: "lock", b.DiffoscopeCID: "diffoscope report"} {
		if c == "" {
			continue
		}
		if _, err := vocab.ParseCID(c); err != nil {
			return Invalid(fmt.Errorf("record build: %s: %w", what, err))
		}
		need[c] = what
	}
	for c, what := range need {
		ok, err := n.hasBlob(c)
		if err != nil {
			return fmt.Errorf("record build: %w", err)
		}
		if !ok {
			return Invalid(fmt.Errorf("record build: the %s (blob %s) is not held by this node: put it first (core.Record does)", what, c))
		}
	}
	return nil
}

// ReportMismatch signs, stores and publishes a red flag about a recipe
// whose claims this node holds (the recipe fields are copied from one).
func (n *Node) ReportMismatch(ctx context.Context, m Mismatch) (*RecordResult, error) {
	if n.id == nil {
		return nil, fmt.Errorf("report mismatch: %w on this node: run `lebowski key gen`", ErrNoIdentity)
	}
	if !vocab.IsSHA256Hex(m.RecipeID) {
		return nil, Invalid(fmt.Errorf("report mismatch: recipe id %q is not 64 hex digits", m.RecipeID))
	}
	scs, err := n.st.ByRecipe(m.RecipeID)
	if err != nil {
		return nil, err
	}
	var tmpl *attest.Statement
	for _, sc := range scs {
		if c, ok, err := n.st.Get(sc.ID); err == nil && ok {
			tmpl = c.Statement
			break
		}
	}
	if tmpl == nil {
		return nil, fmt.Errorf("%w: report mismatch: no claims for recipe %s", ErrNotFound, m.RecipeID)
	}
	stmt := &attest.Statement{
		Type: attest.TypeRebuildV1, Package: tmpl.Package, Version: tmpl.Version, DebianVersion: tmpl.DebianVersion,
		Suite: tmpl.Suite, Arch: tmpl.Arch, Opinion: tmpl.Opinion, DebianSourceSHA256: tmpl.DebianSourceSHA256,
		ContainerDigest: tmpl.ContainerDigest, RecipeID: tmpl.RecipeID, Result: attest.ResultMismatch,
		Artifacts: []attest.Artifact{{Name: m.File, SHA256: m.Observed}}, Expected: []attest.Artifact{{Name: m.File, SHA256: m.Expected}},
		Reason: OneLine(m.Reason), Builder: n.id.Fingerprint(), Timestamp: n.now(),
	}
	if n.net != nil {
		stmt.PeerID = n.net.PeerID()
	}
	if err := stmt.Validate(n.now(), attest.DefaultSkew); err != nil {
		return nil, Invalid(fmt.Errorf("report mismatch: %w", err))
	}
	out, err := n.signAndPublish(ctx, stmt, false)
	if err != nil {
		return nil, fmt.Errorf("report mismatch: %w", err)
	}
	n.log.Warn("red flag signed", "package", stmt.Package, "file", m.File, "observed", m.Observed, "expected", m.Expected)
	return out, nil
}
