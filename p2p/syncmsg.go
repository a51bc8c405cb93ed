package p2p

import (
	"fmt"
	"regexp"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Sync protocol limits (docs/NETWORK.md).
const (
	// MaxSyncRequest bounds one request frame.
	MaxSyncRequest = 128 << 10
	// MaxSyncResponse bounds one response frame.
	MaxSyncResponse = 16 << 20
	// MaxIDsPerPage bounds the IDs in one "ids" response.
	MaxIDsPerPage = 20000
	// MaxGetIDs bounds the IDs in one "get" request.
	MaxGetIDs = 1000
	// MaxDigests bounds the packages in one "digests" response.
	MaxDigests = 100000
	// MaxKeysPerResponse bounds the signer keys in one "get" response.
	MaxKeysPerResponse = 1000
	// maxKeySize bounds one serialized public key.
	maxKeySize = 64 << 10
	// claimBudget is how many bytes of claims and keys a server puts in one
	// "get" response; the client asks again for the rest.
	claimBudget = 8 << 20
)

// Sync operations.
const (
	OpDigests = "digests"
	OpIDs     = "ids"
	OpGet     = "get"
)

var reClaimID = regexp.MustCompile(`^b[a-z2-7]{8,120}$`)
var reHexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Digest is an attest.SetDigest on the wire: the claim count and the
// hash in hex.
type Digest struct {
	Count int    `json:"count"`
	Hash  string `json:"hash"`
}

func wireDigest(d attest.SetDigest) Digest { return Digest{Count: int(d.Count), Hash: d.HexHash()} }

// SyncRequest is one request on a /lebowski/sync/1 stream.
type SyncRequest struct {
	Op      string   `json:"op"`
	Package string   `json:"package,omitempty"` // ids
	After   string   `json:"after,omitempty"`   // ids: page after this ID
	IDs     []string `json:"ids,omitempty"`     // get
}

// SyncResponse answers one SyncRequest. A "get" response is followed on
// the stream by Count frames, each one canonical claim envelope (raw bytes,
// at most attest.MaxEnvelopeSize), in request order.
type SyncResponse struct {
	Error   string            `json:"error,omitempty"`
	Digests map[string]Digest `json:"digests,omitempty"` // digests
	IDs     []string          `json:"ids,omitempty"`     // ids: sorted ascending, all > After
	More    bool              `json:"more,omitempty"`    // ids: another page follows
	Count   int               `json:"count,omitempty"`   // get: number of claim frames that follow this header
	Keys    [][]byte          `json:"keys,omitempty"`    // get: binary OpenPGP public keys of the claims' signers
	Unknown []string          `json:"unknown,omitempty"` // get: requested IDs the server does not hold
}

// isClaimID reports whether s is a claim ID as this node makes them (the
// CID of the canonical envelope: CIDv1, raw, sha2-256, base32), so that a
// request the store could not even look up is the client's fault, not an
// internal error. The server checks requests this strictly; the client
// checks answers with the looser reClaimID.
func isClaimID(s string) bool {
	if !reClaimID.MatchString(s) {
		return false
	}
	_, err := vocab.ParseCID(s)
	return err == nil
}

// Validate checks a request's shape and bounds.
func (r *SyncRequest) Validate() error {
	switch r.Op {
	case OpDigests:
		if r.Package != "" || r.After != "" || len(r.IDs) != 0 {
			return fmt.Errorf("%w: digests request takes no arguments", ErrProtocol)
		}
	case OpIDs:
		if !vocab.IsPackage(r.Package) {
			return fmt.Errorf("%w: ids request: package %q is malformed", ErrProtocol, r.Package)
		}
		if r.After != "" && !isClaimID(r.After) {
			return fmt.Errorf("%w: ids request: after %q is not a claim ID", ErrProtocol, r.After)
		}
		if len(r.IDs) != 0 {
			return fmt.Errorf("%w: ids request takes no ids", ErrProtocol)
		}
	case OpGet:
		if r.Package != "" || r.After != "" {
			return fmt.Errorf("%w: get request takes only ids", ErrProtocol)
		}
		if len(r.IDs) == 0 || len(r.IDs) > MaxGetIDs {
			return fmt.Errorf("%w: get request with %d ids (want 1..%d)", ErrProtocol, len(r.IDs), MaxGetIDs)
		}
		for _, id := range r.IDs {
			if !isClaimID(id) {
				return fmt.Errorf("%w: get request: %q is not a claim ID", ErrProtocol, truncate(id, 128))
			}
		}
	default:
		return fmt.Errorf("%w: unknown op %q", ErrProtocol, r.Op)
	}
	return nil
}

// Validate checks a response against the request it answers.
func (r *SyncResponse) Validate(req *SyncRequest) error {
	if r.Error != "" {
		if len(r.Error) > 1024 {
			return fmt.Errorf("%w: error message too long", ErrProtocol)
		}
		return nil
	}
	switch req.Op {
	case OpDigests:
		if len(r.IDs)+r.Count+len(r.Keys)+len(r.Unknown) != 0 || r.More {
			return fmt.Errorf("%w: digests response with other fields", ErrProtocol)
		}
		if len(r.Digests) > MaxDigests {
			return fmt.Errorf("%w: %d digests (max %d)", ErrProtocol, len(r.Digests), MaxDigests)
		}
		for pkg, d := range r.Digests {
			if !vocab.IsPackage(pkg) || d.Count < 0 || !reHexHash.MatchString(d.Hash) {
				return fmt.Errorf("%w: malformed digest for package %q", ErrProtocol, pkg)
			}
		}
	case OpIDs:
		if len(r.Digests)+r.Count+len(r.Keys)+len(r.Unknown) != 0 {
			return fmt.Errorf("%w: ids response with other fields", ErrProtocol)
		}
		if len(r.IDs) > MaxIDsPerPage || (r.More && len(r.IDs) == 0) {
			return fmt.Errorf("%w: ids page of %d (max %d, more=%v)", ErrProtocol, len(r.IDs), MaxIDsPerPage, r.More)
		}
		prev := req.After
		for _, id := range r.IDs {
			if !reClaimID.MatchString(id) || id <= prev {
				return fmt.Errorf("%w: ids not ascending claim IDs after %q", ErrProtocol, prev)
			}
			prev = id
		}
	case OpGet:
		if len(r.Digests)+len(r.IDs) != 0 || r.More {
			return fmt.Errorf("%w: get response with other fields", ErrProtocol)
		}
		if r.Count < 0 || r.Count+len(r.Unknown) > len(req.IDs) {
			return fmt.Errorf("%w: get response covers %d ids, %d requested", ErrProtocol, r.Count+len(r.Unknown), len(req.IDs))
		}
		if r.Count+len(r.Unknown) == 0 {
			return fmt.Errorf("%w: get response makes no progress", ErrProtocol)
		}
		if len(r.Keys) > MaxKeysPerResponse {
			return fmt.Errorf("%w: %d keys (max %d)", ErrProtocol, len(r.Keys), MaxKeysPerResponse)
		}
		for _, k := range r.Keys {
			if len(k) == 0 || len(k) > maxKeySize {
				return fmt.Errorf("%w: key of %d bytes", ErrProtocol, len(k))
			}
		}
		want := make(map[string]bool, len(req.IDs))
		for _, id := range req.IDs {
			want[id] = true
		}
		for _, id := range r.Unknown {
			if !want[id] {
				return fmt.Errorf("%w: unknown id %q was not requested", ErrProtocol, id)
			}
		}
	default:
		return fmt.Errorf("%w: unknown op %q", ErrProtocol, req.Op)
	}
	return nil
}
