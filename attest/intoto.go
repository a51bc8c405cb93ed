package attest

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// In-toto / SLSA identifiers used by Claim.InToto.
const (
	InTotoStatementV1  = "https://in-toto.io/Statement/v1"
	SLSAProvenanceV1   = "https://slsa.dev/provenance/v1"
	BuildTypeRebuildV1 = "https://lebowski.dev/rebuild/v1"
)

// InTotoStatement is an in-toto Statement v1 whose predicate is SLSA
// provenance v1. Hand-written subset of the specs: only the fields a
// Lebowski claim can fill.
type InTotoStatement struct {
	Type          string           `json:"_type"`
	Subject       []InTotoResource `json:"subject"`
	PredicateType string           `json:"predicateType"`
	Predicate     SLSAProvenance   `json:"predicate"`
}

// InTotoResource is an in-toto ResourceDescriptor.
type InTotoResource struct {
	Name   string            `json:"name,omitempty"`
	URI    string            `json:"uri,omitempty"`
	Digest map[string]string `json:"digest,omitempty"`
}

// SLSAProvenance is the SLSA provenance v1 predicate.
type SLSAProvenance struct {
	BuildDefinition SLSABuildDefinition `json:"buildDefinition"`
	RunDetails      SLSARunDetails      `json:"runDetails"`
}

// SLSABuildDefinition describes the inputs of the build.
type SLSABuildDefinition struct {
	BuildType            string            `json:"buildType"`
	ExternalParameters   RebuildParameters `json:"externalParameters"`
	InternalParameters   RebuildInternals  `json:"internalParameters"`
	ResolvedDependencies []InTotoResource  `json:"resolvedDependencies"`
}

// RebuildParameters are the externalParameters of the lebowski rebuild
// build type: what the operator asked for.
type RebuildParameters struct {
	Opinion       OpinionRef `json:"opinion"`
	Package       string     `json:"package"`
	Version       string     `json:"version"`
	DebianVersion string     `json:"debianVersion"`
	Suite         string     `json:"suite"`
	Arch          string     `json:"arch"`
}

// RebuildInternals are the internalParameters: lebowski's own bookkeeping.
type RebuildInternals struct {
	RecipeID string `json:"recipeId"`
	Result   Result `json:"result"`
}

// SLSARunDetails describes the builder and the run.
type SLSARunDetails struct {
	Builder    SLSABuilder      `json:"builder"`
	Metadata   SLSAMetadata     `json:"metadata"`
	Byproducts []InTotoResource `json:"byproducts,omitempty"`
}

// SLSABuilder identifies the builder: "openpgp:<fingerprint>".
type SLSABuilder struct {
	ID string `json:"id"`
}

// SLSAMetadata carries the claim ID and the statement timestamp.
type SLSAMetadata struct {
	InvocationID string `json:"invocationId"`
	FinishedOn   string `json:"finishedOn"`
}

// ErrNoSubject is returned by InToto for claims without artifacts (failed
// builds): an in-toto statement needs at least one subject.
var ErrNoSubject = errors.New("claim has no artifacts to use as in-toto subjects")

// InTotoView returns the in-toto statement for the claim (see InToto).
func (c *Claim) InTotoView() (*InTotoStatement, error) {
	s := c.Statement
	if s == nil {
		return nil, errors.New("in-toto: claim has no statement")
	}
	if len(s.Artifacts) == 0 {
		return nil, fmt.Errorf("in-toto: %w (result %s)", ErrNoSubject, s.Result)
	}
	subj := make([]InTotoResource, 0, len(s.Artifacts))
	for _, a := range s.Artifacts {
		subj = append(subj, InTotoResource{Name: a.Name, Digest: map[string]string{"sha256": a.SHA256}})
	}
	deps := []InTotoResource{
		{
			Name:   s.Package + "_" + s.DebianVersion + ".dsc",
			URI:    "pkg:deb/debian/" + s.Package + "@" + s.DebianVersion + "?arch=source&distro=" + s.Suite,
			Digest: map[string]string{"sha256": s.DebianSourceSHA256},
		},
		{
			Name:   "build-image",
			Digest: map[string]string{"sha256": strings.TrimPrefix(s.ContainerDigest, "sha256:")},
		},
	}
	if s.LockCID != "" {
		deps = append(deps, InTotoResource{Name: "lock", URI: "ipfs://" + s.LockCID})
	}
	var by []InTotoResource
	if s.BuildinfoCID != "" {
		by = append(by, InTotoResource{Name: "buildinfo", URI: "ipfs://" + s.BuildinfoCID})
	}
	if s.LogCID != "" {
		by = append(by, InTotoResource{Name: "build-log", URI: "ipfs://" + s.LogCID})
	}
	return &InTotoStatement{
		Type:          InTotoStatementV1,
		Subject:       subj,
		PredicateType: SLSAProvenanceV1,
		Predicate: SLSAProvenance{
			BuildDefinition: SLSABuildDefinition{
				BuildType: BuildTypeRebuildV1,
				ExternalParameters: RebuildParameters{
					Opinion: s.Opinion, Package: s.Package, Version: s.Version,
					DebianVersion: s.DebianVersion, Suite: s.Suite, Arch: s.Arch,
				},
				InternalParameters:   RebuildInternals{RecipeID: s.RecipeID, Result: s.Result},
				ResolvedDependencies: deps,
			},
			RunDetails: SLSARunDetails{
				Builder:    SLSABuilder{ID: "openpgp:" + s.Builder},
				Metadata:   SLSAMetadata{InvocationID: c.ID, FinishedOn: s.Timestamp.UTC().Format(time.RFC3339)},
				Byproducts: by,
			},
		},
	}, nil
}

// InToto returns the claim as an in-toto Statement v1 with a SLSA
// provenance v1 predicate, canonically encoded (sorted keys, compact).
// It is an unsigned view of a claim that was verified by other means; it
// carries no signature of its own.
func (c *Claim) InToto() ([]byte, error) {
	v, err := c.InTotoView()
	if err != nil {
		return nil, err
	}
	b, err := canonicalJSON(v)
	if err != nil {
		return nil, fmt.Errorf("in-toto: %w", err)
	}
	return b, nil
}
