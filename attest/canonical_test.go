package attest

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestMirrorsInUse(t *testing.T) {
	if !useMirrors {
		t.Fatal("canonical mirror structs no longer match Statement/Envelope: update attest/canonical.go (the slow generic path is in use)")
	}
}

// TestFastCanonicalMatchesGeneric: the fast encoders must produce the
// exact bytes of the generic definition, for awkward strings too (invalid
// UTF-8 takes the generic path; the rest the mirror path, which
// TestMirrorsInUse asserts is active).
func TestFastCanonicalMatchesGeneric(t *testing.T) {
	odd := []string{"", "<>&", "\u2028\u2029", "é", "\xff\xfe", "\"\\\n\t", "\x00\x1f", strings.Repeat("x", 600)}
	for i, v := range odd {
		s := testStatement()
		s.Package, s.Suite, s.PeerID, s.Opinion.Commit, s.LogCID = v, v+"s", v, v, v
		s.Artifacts = append(s.Artifacts, Artifact{Name: v, SHA256: v})
		s.Timestamp = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		if i%2 == 0 {
			s.Artifacts = nil
			s.Opinion = OpinionRef{}
			s.BuildinfoCID = ""
		}
		fast, err1 := canonicalStatement(s)
		slow, err2 := canonicalJSON(s)
		if err1 != nil || err2 != nil || !bytes.Equal(fast, slow) {
			t.Errorf("statement %q: fast/generic differ (%v, %v)\n%s\n%s", v, err1, err2, fast, slow)
		}
		e := &Envelope{PayloadType: v, Payload: []byte(v), Signature: v + "\n"}
		if i%3 == 0 {
			e.Key = []byte(v + "k")
		}
		fast, err1 = canonicalEnvelope(e)
		slow, err2 = canonicalJSON(e)
		if err1 != nil || err2 != nil || !bytes.Equal(fast, slow) {
			t.Errorf("envelope %q: fast/generic differ (%v, %v)\n%s\n%s", v, err1, err2, fast, slow)
		}
	}
}
