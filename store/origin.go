package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Origin says how a claim first reached this store: evidence for
// `lebowski claims show` ("where it came from"). It is local knowledge,
// never signed or gossiped.
type Origin struct {
	Via  string    `json:"via"`            // one of the Via* constants, "" if unknown
	Peer string    `json:"peer,omitempty"` // libp2p peer ID for gossip and sync
	At   time.Time `json:"at"`             // when it was stored
}

// How a claim arrived.
const (
	ViaGossip = "gossip"
	ViaSync   = "sync"
	ViaImport = "import"
	ViaOwn    = "own build"
)

var viaCodes = map[string]byte{"": 0, ViaGossip: 1, ViaSync: 2, ViaImport: 3, ViaOwn: 4}
var viaNames = map[byte]string{0: "", 1: ViaGossip, 2: ViaSync, 3: ViaImport, 4: ViaOwn}

type originCtxKey struct{}

// WithOrigin returns a context whose Ingest calls record o (Via and Peer;
// At is the commit time) for the claims they store first.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originCtxKey{}, o)
}

func originFrom(ctx context.Context) Origin {
	o, _ := ctx.Value(originCtxKey{}).(Origin)
	return o
}

// encodeOrigin: [1 via][8 unix seconds BE][peer ID bytes, ≤ 128].
func encodeOrigin(o Origin) []byte {
	peer := o.Peer
	if len(peer) > 128 {
		peer = peer[:128]
	}
	out := make([]byte, 0, 9+len(peer))
	out = append(out, viaCodes[o.Via])
	out = binary.BigEndian.AppendUint64(out, uint64(o.At.Unix()))
	return append(out, peer...)
}

func decodeOrigin(v []byte) (Origin, error) {
	if len(v) < 9 {
		return Origin{}, fmt.Errorf("%w: origin of %d bytes", ErrCorrupt, len(v))
	}
	via, ok := viaNames[v[0]]
	if !ok {
		return Origin{}, fmt.Errorf("%w: origin via %d", ErrCorrupt, v[0])
	}
	return Origin{Via: via, At: time.Unix(int64(binary.BigEndian.Uint64(v[1:9])), 0).UTC(), Peer: string(v[9:])}, nil
}

// Origin returns how the claim id reached this store; ok is false when
// the claim is unknown or was stored before origins were recorded.
func (s *Store) Origin(id string) (o Origin, ok bool, err error) {
	ck, err := claimKey(id)
	if err != nil {
		return Origin{}, false, fmt.Errorf("origin: %w", err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktOrigins).Get(ck)
		if v == nil {
			return nil
		}
		o, err = decodeOrigin(v)
		ok = err == nil
		return err
	})
	return o, ok, err
}

// MinClaimPrefix is the shortest claim ID prefix ResolveClaim accepts.
const MinClaimPrefix = 12

// ResolveClaim returns the full IDs of stored claims starting with
// prefix (a full ID or at least MinClaimPrefix characters, as
// `lebowski claims list` prints them); at most limit IDs.
func (s *Store) ResolveClaim(prefix string, limit int) ([]string, error) {
	if _, err := claimKey(prefix); err == nil {
		ok, err := s.Has(prefix)
		if err != nil || !ok {
			return nil, err
		}
		return []string{prefix}, nil
	}
	if len(prefix) < MinClaimPrefix || prefix[0] != 'b' {
		return nil, fmt.Errorf("claim id %q: want a full claim ID or its first %d+ characters (bafkrei…)", prefix, MinClaimPrefix)
	}
	// Whole bytes the base32 prefix fixes: seek there, then compare strings.
	var key []byte
	var acc, bits uint
	for _, r := range prefix[1:] {
		v := strings.IndexRune("abcdefghijklmnopqrstuvwxyz234567", r)
		if v < 0 {
			return nil, fmt.Errorf("claim id %q: %q is not a base32 character", prefix, r)
		}
		acc = acc<<5 | uint(v)
		bits += 5
		if bits >= 8 {
			key = append(key, byte(acc>>(bits-8)))
			bits -= 8
			acc &= 1<<bits - 1
		}
	}
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktClaims).Cursor()
		for k, _ := c.Seek(key); k != nil && bytes.HasPrefix(k, key) && len(out) < limit; k, _ = c.Next() {
			id, err := claimIDString(k)
			if err != nil {
				return err
			}
			if strings.HasPrefix(id, prefix) {
				out = append(out, id)
			}
		}
		return nil
	})
	return out, err
}
