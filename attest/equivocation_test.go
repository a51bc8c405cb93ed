package attest

import (
	"strings"
	"testing"
)

func TestEquivocates(t *testing.T) {
	other := strings.Repeat("0f", 32)
	tests := []struct {
		desc   string
		mutate func(b *Statement)
		want   bool
	}{
		{"identical", func(b *Statement) {}, false},
		{"same artifacts, other order and time", func(b *Statement) {
			b.Artifacts[0], b.Artifacts[1] = b.Artifacts[1], b.Artifacts[0]
			b.Timestamp = b.Timestamp.Add(1)
		}, false},
		{"different hash", func(b *Statement) { b.Artifacts[0].SHA256 = other }, true},
		{"extra artifact", func(b *Statement) { b.Artifacts = append(b.Artifacts, Artifact{Name: "x.deb", SHA256: other}) }, true},
		{"different builder", func(b *Statement) { b.Builder = strings.Repeat("B", 40); b.Artifacts[0].SHA256 = other }, false},
		{"different recipe", func(b *Statement) { b.RecipeID = other; b.Artifacts[0].SHA256 = other }, false},
		{"second is failed", func(b *Statement) { b.Result = ResultFailed; b.Artifacts = nil }, false},
		{"second is unreproducible with other hashes", func(b *Statement) { b.Result = ResultUnreproducible; b.Artifacts[0].SHA256 = other }, false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			a, b := testStatement(), testStatement()
			tt.mutate(b)
			if got := Equivocates(a, b); got != tt.want {
				t.Fatalf("Equivocates = %v, want %v", got, tt.want)
			}
			if got := Equivocates(b, a); got != tt.want {
				t.Fatalf("not symmetric")
			}
		})
	}
	if Equivocates(nil, testStatement()) {
		t.Fatal("nil statement")
	}
}
