package attest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	hex := func(b string) string { return strings.Repeat(b, 32) }
	tests := []struct {
		desc    string
		mutate  func(s *Statement)
		now     time.Time
		skew    time.Duration
		wantErr string // substring; empty = valid
	}{
		{desc: "valid success", mutate: func(s *Statement) {}},
		{desc: "valid vanilla build (no opinion)", mutate: func(s *Statement) { s.Opinion = OpinionRef{}; s.RecipeID = s.Recipe().ID() }},
		{desc: "valid v6 fingerprint", mutate: func(s *Statement) { s.Builder = strings.Repeat("B", 64) }},
		{desc: "failed without artifacts", mutate: func(s *Statement) { s.Result = ResultFailed; s.Artifacts = nil }},
		{desc: "unreproducible with artifacts", mutate: func(s *Statement) { s.Result = ResultUnreproducible }},
		{desc: "exactly MaxArtifacts", mutate: func(s *Statement) { s.Artifacts = nArtifacts(MaxArtifacts) }},
		{desc: "bad type", mutate: func(s *Statement) { s.Type = "lebowski.rebuild/v2" }, wantErr: "unknown type"},
		{desc: "empty type", mutate: func(s *Statement) { s.Type = "" }, wantErr: "unknown type"},
		{desc: "upper-case package", mutate: func(s *Statement) { s.Package = "Hello" }, wantErr: "package"},
		{desc: "one-letter package", mutate: func(s *Statement) { s.Package = "h" }, wantErr: "package"},
		{desc: "package with slash", mutate: func(s *Statement) { s.Package = "../etc" }, wantErr: "package"},
		{desc: "version with space", mutate: func(s *Statement) { s.Version = "1.0 1" }, wantErr: "version"},
		{desc: "empty debian_version", mutate: func(s *Statement) { s.DebianVersion = "" }, wantErr: "debian_version"},
		{desc: "bad suite", mutate: func(s *Statement) { s.Suite = "Bookworm" }, wantErr: "suite"},
		{desc: "bad arch", mutate: func(s *Statement) { s.Arch = "" }, wantErr: "arch"},
		{desc: "bad opinion name", mutate: func(s *Statement) { s.Opinion.Name = "O 3" }, wantErr: "opinion name"},
		{desc: "opinion cid too long", mutate: func(s *Statement) { s.Opinion.CID = strings.Repeat("b", MaxStringField+1) }, wantErr: "too long"},
		{desc: "unknown purity", mutate: func(s *Statement) { s.Opinion.Purity = "mostly-pure" }, wantErr: "purity"},
		{desc: "source hash upper-case", mutate: func(s *Statement) { s.DebianSourceSHA256 = strings.ToUpper(hex("ab")) }, wantErr: "debian_source_sha256"},
		{desc: "source hash short", mutate: func(s *Statement) { s.DebianSourceSHA256 = hex("ab")[:63] }, wantErr: "debian_source_sha256"},
		{desc: "container digest without prefix", mutate: func(s *Statement) { s.ContainerDigest = hex("ab") }, wantErr: "container_digest"},
		{desc: "builder lower-case", mutate: func(s *Statement) { s.Builder = strings.Repeat("a", 40) }, wantErr: "builder"},
		{desc: "builder key ID only", mutate: func(s *Statement) { s.Builder = strings.Repeat("A", 16) }, wantErr: "builder"},
		{desc: "peer id too long", mutate: func(s *Statement) { s.PeerID = strings.Repeat("p", 129) }, wantErr: "too long"},
		{desc: "zero timestamp", mutate: func(s *Statement) { s.Timestamp = time.Time{} }, wantErr: "timestamp missing"},
		{desc: "future beyond skew", mutate: func(s *Statement) { s.Timestamp = now.Add(11 * time.Minute) }, now: now, skew: 10 * time.Minute, wantErr: "in the future"},
		{desc: "future within skew", mutate: func(s *Statement) { s.Timestamp = now.Add(9 * time.Minute) }, now: now, skew: 10 * time.Minute},
		{desc: "future exactly at skew", mutate: func(s *Statement) { s.Timestamp = now.Add(10 * time.Minute) }, now: now, skew: 10 * time.Minute},
		{desc: "far future with zero now skips the check", mutate: func(s *Statement) { s.Timestamp = now.AddDate(5, 0, 0) }},
		{desc: "too many artifacts", mutate: func(s *Statement) { s.Artifacts = nArtifacts(MaxArtifacts + 1) }, wantErr: "artifacts (max"},
		{desc: "success without artifacts", mutate: func(s *Statement) { s.Artifacts = nil }, wantErr: "success without artifacts"},
		{desc: "unknown result", mutate: func(s *Statement) { s.Result = "maybe" }, wantErr: "result"},
		{desc: "artifact name with slash", mutate: func(s *Statement) { s.Artifacts[0].Name = "../x.deb" }, wantErr: "file name"},
		{desc: "artifact bad hash", mutate: func(s *Statement) { s.Artifacts[1].SHA256 = "sha256:" + hex("05") }, wantErr: "artifacts[1].sha256"},
		{desc: "duplicate artifact names", mutate: func(s *Statement) { s.Artifacts[1].Name = s.Artifacts[0].Name }, wantErr: "repeated"},
		{desc: "recipe_id mismatch", mutate: func(s *Statement) { s.RecipeID = hex("ff") }, wantErr: "recipe_id"},
		{desc: "failed with a reason", mutate: func(s *Statement) {
			s.Result = ResultFailed
			s.Artifacts = nil
			s.Reason = "opinion does not apply: patch 1 of 1 fails"
		}},
		{desc: "reason with a newline", mutate: func(s *Statement) { s.Result = ResultFailed; s.Reason = "a\nb" }, wantErr: "control character"},
		{desc: "reason too long", mutate: func(s *Statement) { s.Reason = strings.Repeat("x", MaxStringField+1) }, wantErr: "reason longer"},
		{desc: "reason not UTF-8", mutate: func(s *Statement) { s.Reason = "\xff" }, wantErr: "UTF-8"},
		{desc: "unreproducible with both sets and a report", mutate: func(s *Statement) {
			s.Result = ResultUnreproducible
			s.SecondArtifacts = []Artifact{{Name: s.Artifacts[0].Name, SHA256: hex("0c")}}
			s.DiffoscopeCID = "bafkreiabc"
		}},
		{desc: "second artifacts on a success", mutate: func(s *Statement) { s.SecondArtifacts = s.Artifacts }, wantErr: "unreproducible"},
		{desc: "bad second artifact", mutate: func(s *Statement) {
			s.Result = ResultUnreproducible
			s.SecondArtifacts = []Artifact{{Name: "x.deb", SHA256: "nope"}}
		}, wantErr: "second_artifacts[0].sha256"},
		{desc: "mismatch report", mutate: func(s *Statement) {
			s.Result = ResultMismatch
			s.Artifacts = s.Artifacts[:1]
			s.Expected = []Artifact{{Name: s.Artifacts[0].Name, SHA256: hex("0d")}}
			s.Reason = "verify: differs from the consensus"
		}},
		{desc: "mismatch report with the same hash", mutate: func(s *Statement) {
			s.Result = ResultMismatch
			s.Artifacts = s.Artifacts[:1]
			s.Expected = s.Artifacts
		}, wantErr: "mismatch report names"},
		{desc: "mismatch report of two files", mutate: func(s *Statement) {
			s.Result = ResultMismatch
			s.Expected = []Artifact{{Name: s.Artifacts[0].Name, SHA256: hex("0d")}}
		}, wantErr: "mismatch report names"},
		{desc: "expected on a success", mutate: func(s *Statement) { s.Expected = s.Artifacts[:1] }, wantErr: "mismatch report"},
		{desc: "recipe field changed after recipe_id", mutate: func(s *Statement) { s.ContainerDigest = "sha256:" + hex("ee") }, wantErr: "recipe_id"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := testStatement()
			tt.mutate(s)
			err := s.Validate(tt.now, tt.skew)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got nil", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidStatement) {
				t.Errorf("error %v does not unwrap to ErrInvalidStatement", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func nArtifacts(n int) []Artifact {
	as := make([]Artifact, n)
	for i := range as {
		as[i] = Artifact{Name: fmt.Sprintf("p%d_1.0_amd64.deb", i), SHA256: fmt.Sprintf("%064x", i)}
	}
	return as
}

func TestRecipeIDDependsOnEveryField(t *testing.T) {
	base := testStatement().Recipe()
	seen := map[string]string{base.ID(): "base"}
	for _, tt := range []struct {
		desc   string
		mutate func(r *Recipe)
	}{
		{"source", func(r *Recipe) { r.Source = "other" }},
		{"debian version", func(r *Recipe) { r.DebianVersion = "9" }},
		{"suite", func(r *Recipe) { r.Suite = "trixie" }},
		{"arch", func(r *Recipe) { r.Arch = "arm64" }},
		{"opinion cid", func(r *Recipe) { r.OpinionCID = "bafyother" }},
		{"source sha", func(r *Recipe) { r.SourceSHA256 = strings.Repeat("0", 64) }},
		{"image digest", func(r *Recipe) { r.ImageDigest = "sha256:" + strings.Repeat("0", 64) }},
	} {
		r := base
		tt.mutate(&r)
		id := r.ID()
		if prev, dup := seen[id]; dup {
			t.Errorf("%s: recipe ID %s equals the one of %s", tt.desc, id, prev)
		}
		seen[id] = tt.desc
	}
	if base.ID() != testStatement().Recipe().ID() {
		t.Error("recipe ID is not deterministic")
	}
}

func TestArtifactKeyIgnoresOrder(t *testing.T) {
	a := testStatement()
	b := testStatement()
	b.Artifacts[0], b.Artifacts[1] = b.Artifacts[1], b.Artifacts[0]
	if a.ArtifactKey() != b.ArtifactKey() {
		t.Error("artifact key depends on artifact order")
	}
	b.Artifacts[0].SHA256 = strings.Repeat("09", 32)
	if a.ArtifactKey() == b.ArtifactKey() {
		t.Error("artifact key ignores a hash change")
	}
}

func TestDecodeStatementCanonical(t *testing.T) {
	s := testStatement()
	canon := statementJSON(t, s)
	if got, err := DecodeStatement(canon); err != nil {
		t.Fatalf("canonical payload rejected: %v", err)
	} else if got.RecipeID != s.RecipeID || !got.Timestamp.Equal(s.Timestamp) || len(got.Artifacts) != 2 {
		t.Fatalf("round trip changed the statement: %+v", got)
	}
	str := string(canon)
	tests := []struct {
		desc    string
		payload string
	}{
		{"leading space", " " + str},
		{"trailing newline", str + "\n"},
		{"pretty printed", strings.Replace(str, `,"builder"`, `, "builder"`, 1)},
		{"keys out of order", strings.Replace(str, `{"arch":"amd64",`, `{`, 1)[:len(str)-len(`"arch":"amd64",`)-1] + `,"arch":"amd64"}`},
		{"unicode escape", strings.Replace(str, `"package":"hello"`, `"package":"\u0068ello"`, 1)},
		{"fractional seconds", strings.Replace(str, s.Timestamp.Format(time.RFC3339)+`"`, strings.TrimSuffix(s.Timestamp.Format(time.RFC3339), "Z")+`.5Z"`, 1)},
		{"non-UTC offset", strings.Replace(str, s.Timestamp.Format(time.RFC3339), s.Timestamp.In(time.FixedZone("x", 3600)).Format(time.RFC3339), 1)},
		{"duplicate key", strings.Replace(str, `"package":"hello"`, `"package":"hello","package":"hello"`, 1)},
		{"key in other case", strings.Replace(str, `"package":`, `"Package":`, 1)},
		{"unknown field", strings.Replace(str, `{"arch"`, `{"aardvark":1,"arch"`, 1)},
		{"trailing data", str + "{}"},
		{"two documents", str + str},
		{"null artifacts", strings.Replace(str, `"artifacts":[`+artifactsJSON(t, s)+`]`, `"artifacts":null`, 1)},
		{"not json", "hello"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if tt.payload == str {
				t.Fatal("test case does not change the payload")
			}
			_, err := DecodeStatement([]byte(tt.payload))
			checkErr(t, err, nil)
		})
	}
}

func artifactsJSON(t *testing.T, s *Statement) string {
	var parts []string
	for _, a := range s.Artifacts {
		parts = append(parts, `{"name":"`+a.Name+`","sha256":"`+a.SHA256+`"}`)
	}
	return strings.Join(parts, ",")
}
