package p2p

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTopicFromSpec(t *testing.T) {
	tests := []struct {
		desc, spec, want string
		ok               bool
	}{
		{"package and opinion", "hello/o3", "/lebowski/1/opinion/hello/o3", true},
		{"package only is vanilla", "hello", "/lebowski/1/opinion/hello/vanilla", true},
		{"full topic", "/lebowski/1/opinion/nginx/http3", "/lebowski/1/opinion/nginx/http3", true},
		{"package with plus", "libc++/o2", "/lebowski/1/opinion/libc++/o2", true},
		{"upper case package", "Hello/o3", "", false},
		{"opinion with slash", "hello/o3/x", "", false},
		{"foreign topic", "/other/topic", "", false},
		{"full topic without opinion", "/lebowski/1/opinion/hello", "", false},
		{"empty", "", "", false},
		{"shell chars", "hello/$(id)", "", false},
		{"hyphenated opinion (breaks the binary version)", "pv/no-nls", "", false},
		{"reserved opinion name", "hello/bpo12", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := TopicFromSpec(tc.spec)
			if !tc.ok {
				assert.Error(t, err)
				assert.True(t, errors.Is(err, ErrBadTopic), "error %v should wrap ErrBadTopic", err)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tc.want, got)
			pkg, op, err := ParseTopic(got)
			assert.NoError(t, err)
			again, _ := TopicFor(pkg, op)
			assert.Equal(t, got, again)
		})
	}
}

func TestClaimTopic(t *testing.T) {
	id := testIdentity(t)
	tests := []struct{ desc, opinion, want string }{
		{"opinion claim", "o3", "/lebowski/1/opinion/hello/o3"},
		{"vanilla claim", "", "/lebowski/1/opinion/hello/vanilla"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ClaimTopic(testClaim(t, id, "hello", tc.opinion, 1))
			assert.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := ClaimTopic(nil)
	assert.ErrorIs(t, err, ErrBadTopic)
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"/lebowski/1/opinion/hello/o3", "/lebowski/1/opinion/hello", "", "/lebowski/1/opinion//", "/lebowski/1/opinion/a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pkg, op, err := ParseTopic(s)
		if err != nil {
			return
		}
		back, err := TopicFor(pkg, op)
		if err != nil || back != s {
			t.Fatalf("ParseTopic(%q) = %q %q but TopicFor gives %q, %v", s, pkg, op, back, err)
		}
	})
}
