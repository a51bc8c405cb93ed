package attest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestInToto(t *testing.T) {
	a, _ := testIdentities(t)
	c := mustSign(t, a, nil)
	b, err := c.InToto()
	if err != nil {
		t.Fatal(err)
	}
	// Decode generically: the test checks the JSON field names of the
	// specs, not the Go structs.
	var m struct {
		Type    string `json:"_type"`
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		PredicateType string `json:"predicateType"`
		Predicate     struct {
			BuildDefinition struct {
				BuildType          string         `json:"buildType"`
				ExternalParameters map[string]any `json:"externalParameters"`
				ResolvedDeps       []struct {
					URI    string            `json:"uri"`
					Digest map[string]string `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Builder  struct{ ID string } `json:"builder"`
				Metadata struct {
					InvocationID string `json:"invocationId"`
					FinishedOn   string `json:"finishedOn"`
				} `json:"metadata"`
			} `json:"runDetails"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("in-toto JSON: %v\n%s", err, b)
	}
	s := c.Statement
	checks := []struct {
		desc      string
		got, want any
	}{
		{"_type", m.Type, "https://in-toto.io/Statement/v1"},
		{"predicateType", m.PredicateType, "https://slsa.dev/provenance/v1"},
		{"subject count", len(m.Subject), len(s.Artifacts)},
		{"subject[0] name", m.Subject[0].Name, s.Artifacts[0].Name},
		{"subject[0] sha256", m.Subject[0].Digest["sha256"], s.Artifacts[0].SHA256},
		{"subject[1] sha256", m.Subject[1].Digest["sha256"], s.Artifacts[1].SHA256},
		{"buildType", m.Predicate.BuildDefinition.BuildType, "https://lebowski.dev/rebuild/v1"},
		{"package", m.Predicate.BuildDefinition.ExternalParameters["package"], s.Package},
		{"version", m.Predicate.BuildDefinition.ExternalParameters["version"], s.Version},
		{"suite", m.Predicate.BuildDefinition.ExternalParameters["suite"], s.Suite},
		{"opinion name", m.Predicate.BuildDefinition.ExternalParameters["opinion"].(map[string]any)["name"], s.Opinion.Name},
		{"opinion cid", m.Predicate.BuildDefinition.ExternalParameters["opinion"].(map[string]any)["cid"], s.Opinion.CID},
		{"deps", len(m.Predicate.BuildDefinition.ResolvedDeps), 2},
		{"source sha256", m.Predicate.BuildDefinition.ResolvedDeps[0].Digest["sha256"], s.DebianSourceSHA256},
		{"image sha256", "sha256:" + m.Predicate.BuildDefinition.ResolvedDeps[1].Digest["sha256"], s.ContainerDigest},
		{"builder id", m.Predicate.RunDetails.Builder.ID, "openpgp:" + a.Fingerprint()},
		{"invocation id", m.Predicate.RunDetails.Metadata.InvocationID, c.ID},
		{"finishedOn", m.Predicate.RunDetails.Metadata.FinishedOn, s.Timestamp.UTC().Format(time.RFC3339)},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.desc, ck.got, ck.want)
		}
	}
	if again, _ := c.InToto(); string(again) != string(b) {
		t.Error("InToto is not deterministic")
	}

	failed := mustSign(t, a, func(s *Statement) { s.Result = ResultFailed; s.Artifacts = nil })
	if _, err := failed.InToto(); !errors.Is(err, ErrNoSubject) {
		t.Errorf("failed build: err %v, want ErrNoSubject", err)
	}
}
