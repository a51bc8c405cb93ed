package p2p

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func frame(payload string) []byte {
	var b bytes.Buffer
	var hdr [binary.MaxVarintLen64]byte
	b.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(payload)))])
	b.WriteString(payload)
	return b.Bytes()
}

func TestReadMsg(t *testing.T) {
	tests := []struct {
		desc    string
		in      []byte
		max     int
		wantErr error
		want    SyncRequest
	}{
		{"digests", frame(`{"op":"digests"}`), 1024, nil, SyncRequest{Op: OpDigests}},
		{"ids with after", frame(`{"op":"ids","package":"hello","after":"bafkreiabc"}`), 1024, nil, SyncRequest{Op: OpIDs, Package: "hello", After: "bafkreiabc"}},
		{"empty stream", nil, 1024, io.EOF, SyncRequest{}},
		{"unknown field", frame(`{"op":"digests","x":1}`), 1024, ErrProtocol, SyncRequest{}},
		{"trailing data", frame(`{"op":"digests"}{}`), 1024, ErrProtocol, SyncRequest{}},
		{"frame over limit", frame(`{"op":"digests"}`), 8, ErrTooLarge, SyncRequest{}},
		{"zero length", []byte{0}, 1024, ErrProtocol, SyncRequest{}},
		{"truncated frame", frame(`{"op":"digests"}`)[:5], 1024, ErrProtocol, SyncRequest{}},
		{"huge varint", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1024, ErrProtocol, SyncRequest{}},
		{"not json", frame(`hello`), 1024, ErrProtocol, SyncRequest{}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var got SyncRequest
			err := readMsg(bufio.NewReader(bytes.NewReader(tc.in)), tc.max, &got)
			if tc.wantErr != nil {
				assert.True(t, errors.Is(err, tc.wantErr), "got %v, want %v", err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	var b bytes.Buffer
	in := SyncResponse{IDs: []string{"bafkreiaaa", "bafkreibbb"}, More: true}
	require.NoError(t, writeMsg(&b, in, 1024))
	var out SyncResponse
	require.NoError(t, readMsg(bufio.NewReader(&b), 1024, &out))
	assert.Equal(t, in, out)
	err := writeMsg(&b, SyncResponse{Error: strings.Repeat("x", 2000)}, 1024)
	assert.ErrorIs(t, err, ErrTooLarge)
}

func TestSyncRequestValidate(t *testing.T) {
	id := "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
	tests := []struct {
		desc string
		req  SyncRequest
		ok   bool
	}{
		{"digests", SyncRequest{Op: OpDigests}, true},
		{"digests with package", SyncRequest{Op: OpDigests, Package: "hello"}, false},
		{"ids", SyncRequest{Op: OpIDs, Package: "hello"}, true},
		{"ids after", SyncRequest{Op: OpIDs, Package: "hello", After: id}, true},
		{"ids bad package", SyncRequest{Op: OpIDs, Package: "../etc"}, false},
		{"ids bad after", SyncRequest{Op: OpIDs, Package: "hello", After: "QmX"}, false},
		{"get", SyncRequest{Op: OpGet, IDs: []string{id}}, true},
		{"get none", SyncRequest{Op: OpGet}, false},
		{"get too many", SyncRequest{Op: OpGet, IDs: make([]string, MaxGetIDs+1)}, false},
		{"get bad id", SyncRequest{Op: OpGet, IDs: []string{"x y"}}, false},
		{"unknown op", SyncRequest{Op: "delete"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.req.Validate()
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrProtocol)
			}
		})
	}
}

func TestSyncResponseValidate(t *testing.T) {
	a, b := "bafkreiaaaaaaaa", "bafkreibbbbbbbb"
	hash := strings.Repeat("a", 64)
	tests := []struct {
		desc string
		req  SyncRequest
		resp SyncResponse
		ok   bool
	}{
		{"digests", SyncRequest{Op: OpDigests}, SyncResponse{Digests: map[string]Digest{"hello": {Count: 1, Hash: hash}}}, true},
		{"digest bad hash", SyncRequest{Op: OpDigests}, SyncResponse{Digests: map[string]Digest{"hello": {Count: 1, Hash: "x"}}}, false},
		{"digest bad package", SyncRequest{Op: OpDigests}, SyncResponse{Digests: map[string]Digest{"A": {Count: 1, Hash: hash}}}, false},
		{"ids ascending", SyncRequest{Op: OpIDs, Package: "hello"}, SyncResponse{IDs: []string{a, b}}, true},
		{"ids not ascending", SyncRequest{Op: OpIDs, Package: "hello"}, SyncResponse{IDs: []string{b, a}}, false},
		{"ids not after cursor", SyncRequest{Op: OpIDs, Package: "hello", After: b}, SyncResponse{IDs: []string{a}}, false},
		{"ids more without ids", SyncRequest{Op: OpIDs, Package: "hello"}, SyncResponse{More: true}, false},
		{"get unknown", SyncRequest{Op: OpGet, IDs: []string{a}}, SyncResponse{Unknown: []string{a}}, true},
		{"get unrequested unknown", SyncRequest{Op: OpGet, IDs: []string{a}}, SyncResponse{Unknown: []string{b}}, false},
		{"get no progress", SyncRequest{Op: OpGet, IDs: []string{a}}, SyncResponse{}, false},
		{"get too many", SyncRequest{Op: OpGet, IDs: []string{a}}, SyncResponse{Count: 2}, false},
		{"error", SyncRequest{Op: OpGet, IDs: []string{a}}, SyncResponse{Error: "internal error"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.resp.Validate(&tc.req)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrProtocol)
			}
		})
	}
}

// FuzzSyncResponse feeds arbitrary frames to the client-side decoder.
func FuzzSyncResponse(f *testing.F) {
	f.Add([]byte(`{"digests":{"hello":{"count":1,"hash":"aa"}}}`), uint8(0))
	f.Add([]byte(`{"ids":["bafkreiaaaaaaaa"],"more":true}`), uint8(1))
	f.Add([]byte(`{"count":1,"keys":["AAAA"],"unknown":["bafkreiaaaaaaaa"]}`), uint8(2))
	f.Add([]byte(`{"error":"nope"}`), uint8(2))
	f.Add([]byte{0xff, 0x00}, uint8(0))
	reqs := []SyncRequest{{Op: OpDigests}, {Op: OpIDs, Package: "hello"}, {Op: OpGet, IDs: []string{"bafkreiaaaaaaaa"}}}
	f.Fuzz(func(t *testing.T, payload []byte, which uint8) {
		var resp SyncResponse
		if err := readMsg(bufio.NewReader(bytes.NewReader(frame(string(payload)))), MaxSyncResponse, &resp); err != nil {
			return
		}
		req := reqs[int(which)%len(reqs)]
		_ = resp.Validate(&req)
	})
}

// FuzzSyncRequest feeds arbitrary frames to the server-side decoder.
func FuzzSyncRequest(f *testing.F) {
	f.Add(frame(`{"op":"digests"}`))
	f.Add(frame(`{"op":"ids","package":"hello","after":"bafkreiaaaaaaaa"}`))
	f.Add(frame(`{"op":"get","ids":["bafkreiaaaaaaaa"]}`))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		for i := 0; i < 4; i++ {
			var req SyncRequest
			if err := readMsg(r, MaxSyncRequest, &req); err != nil {
				return
			}
			if req.Validate() == nil {
				var b bytes.Buffer
				if err := writeMsg(&b, req, MaxSyncRequest); err != nil {
					t.Fatalf("valid request does not re-encode: %v", err)
				}
			}
		}
	})
}
