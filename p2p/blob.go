package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lebowski-dist/lebowski/attest/vocab"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// BlobProtocol serves content-addressed blobs.
const BlobProtocol protocol.ID = "/lebowski/blob/1"

const (
	maxBlobHeader   = 4 << 10
	maxInboundBlobs = 16
	blobIOTimeout   = 60 * time.Second
)

// BlobRequest asks for one blob.
type BlobRequest struct {
	CID string `json:"cid"`
}

// BlobResponse precedes the blob bytes: Size bytes follow unless Error is set.
type BlobResponse struct {
	Error string `json:"error,omitempty"`
	Size  int64  `json:"size,omitempty"`
}

// parseBlobCID checks a requested CID (vocab.ParseCID: CIDv1, raw,
// sha2-256, canonical form), the only kind the blob protocol serves.
func parseBlobCID(s string) (string, error) {
	if _, err := vocab.ParseCID(s); err != nil {
		return "", fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return s, nil
}

// checkBlob verifies that data hashes to c.
func checkBlob(c string, data []byte) error {
	if got := vocab.CID(data); got != c {
		return fmt.Errorf("%w: want %s, got %s", ErrBlobMismatch, c, got)
	}
	return nil
}

func (n *Node) handleBlob(s network.Stream) {
	p := s.Conn().RemotePeer()
	n.mu.Lock()
	busy := n.closed || n.blobsInFlight >= maxInboundBlobs
	if !busy {
		n.blobsInFlight++
	}
	n.mu.Unlock()
	if busy {
		_ = s.Reset()
		return
	}
	defer func() {
		n.mu.Lock()
		n.blobsInFlight--
		n.mu.Unlock()
	}()
	_ = s.SetReadDeadline(time.Now().Add(blobIOTimeout))
	var req BlobRequest
	if err := readMsg(bufio.NewReader(io.LimitReader(s, maxBlobHeader+16)), maxBlobHeader, &req); err != nil {
		n.log.Debug("blob: bad request", "peer", p, "err", err)
		_ = s.Reset()
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(blobIOTimeout))
	reply := func(r BlobResponse, data []byte) {
		if err := writeMsg(s, r, maxBlobHeader); err == nil && data != nil {
			_, err = s.Write(data)
		}
		_ = s.Close()
	}
	c, err := parseBlobCID(req.CID)
	if err != nil {
		reply(BlobResponse{Error: err.Error()}, nil)
		return
	}
	if n.deps.Blobs == nil {
		reply(BlobResponse{Error: "not found"}, nil)
		return
	}
	data, ok, err := n.deps.Blobs.GetBlob(c)
	switch {
	case err != nil:
		n.log.Error("blob: get", "cid", c, "err", err)
		reply(BlobResponse{Error: "internal error"}, nil)
	case !ok:
		reply(BlobResponse{Error: "not found"}, nil)
	case int64(len(data)) > n.cfg.MaxBlobSize:
		reply(BlobResponse{Error: "blob larger than the server's limit"}, nil)
	default:
		reply(BlobResponse{Size: int64(len(data))}, data)
	}
}

// FetchBlob asks peer p for the blob with CID cidStr, checks the bytes
// against the CID and, if the node has a BlobStore, stores them.
func (n *Node) FetchBlob(ctx context.Context, p peer.ID, cidStr string) ([]byte, error) {
	return n.fetchBlob(ctx, p, cidStr, true)
}

func (n *Node) fetchBlob(ctx context.Context, p peer.ID, cidStr string, keep bool) ([]byte, error) {
	c, err := parseBlobCID(cidStr)
	if err != nil {
		return nil, fmt.Errorf("fetch blob: %w", err)
	}
	s, err := n.host.NewStream(ctx, p, BlobProtocol)
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w", c, p, err)
	}
	defer s.Reset() // no-op after Close
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	_ = s.SetDeadline(time.Now().Add(blobIOTimeout))
	if err := writeMsg(s, BlobRequest{CID: c}, maxBlobHeader); err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w", c, p, err)
	}
	_ = s.CloseWrite()
	r := bufio.NewReader(s)
	var resp BlobResponse
	if err := readMsg(r, maxBlobHeader, &resp); err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w", c, p, err)
	}
	switch {
	case resp.Error == "not found":
		return nil, fmt.Errorf("fetch blob %s from %s: %w", c, p, ErrNotFound)
	case resp.Error != "":
		if len(resp.Error) > 512 {
			resp.Error = resp.Error[:512]
		}
		return nil, fmt.Errorf("fetch blob %s from %s: peer error: %q", c, p, resp.Error)
	case resp.Size < 0 || resp.Size > n.cfg.MaxBlobSize:
		return nil, fmt.Errorf("fetch blob %s from %s: %w: %w: %d bytes (max %d)", c, p, ErrProtocol, ErrTooLarge, resp.Size, n.cfg.MaxBlobSize)
	}
	data := make([]byte, resp.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w: %w", c, p, ErrProtocol, err)
	}
	if err := checkBlob(c, data); err != nil {
		n.Penalize(p, "blob does not match its CID")
		return nil, fmt.Errorf("fetch blob from %s: %w", p, err)
	}
	_ = s.Close()
	if keep && n.deps.Blobs != nil {
		if _, err := n.deps.Blobs.PutBlob(data); err != nil {
			return nil, fmt.Errorf("fetch blob %s: store: %w", c, err)
		}
	}
	return data, nil
}

// perPeerBlobTimeout bounds one peer's answer in FetchBlobAny.
const perPeerBlobTimeout = 2 * time.Minute

// FetchBlobAny asks the connected peers, one after the other, for the blob
// with CID cidStr and returns the first answer whose bytes match the CID
// (a liar is penalized), with the peer that gave it; keep stores it in the
// node's BlobStore too. maxSize bounds the answer (≤ the node's
// MaxBlobSize). It fails with ErrNotFound when no connected peer has it.
func (n *Node) FetchBlobAny(ctx context.Context, cidStr string, maxSize int64, keep bool) ([]byte, peer.ID, error) {
	if _, err := parseBlobCID(cidStr); err != nil {
		return nil, "", fmt.Errorf("fetch blob: %w", err)
	}
	if maxSize > n.cfg.MaxBlobSize {
		return nil, "", fmt.Errorf("fetch blob %s: %w: %d bytes, this node accepts at most %d", cidStr, ErrTooLarge, maxSize, n.cfg.MaxBlobSize)
	}
	peers := n.host.Network().Peers()
	if len(peers) == 0 {
		return nil, "", fmt.Errorf("fetch blob %s: %w: no connected peers", cidStr, ErrNotFound)
	}
	var errs []error
	for _, p := range peers {
		pctx, cancel := context.WithTimeout(ctx, perPeerBlobTimeout)
		data, err := n.fetchBlob(pctx, p, cidStr, keep)
		cancel()
		if err == nil {
			return data, p, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		if !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("no good answer from %d connected peers: %w", len(peers), errors.Join(errs...))
	}
	return nil, "", fmt.Errorf("fetch blob %s: %w: none of %d connected peers has it", cidStr, ErrNotFound, len(peers))
}

// Penalize lowers a peer's gossipsub score for misbehaviour outside
// gossip (a blob or sync answer that does not check out): each penalty
// costs PenaltyScore through the application-specific score, so a peer
// that keeps lying is graylisted and then ignored.
func (n *Node) Penalize(p peer.ID, why string) {
	n.penMu.Lock()
	n.penalties[p]++
	count := n.penalties[p]
	n.penMu.Unlock()
	n.log.Warn("peer penalized", "peer", p, "why", why, "penalties", count)
}

// PenaltyScore is what one penalty takes off a peer's score.
const PenaltyScore = -50

func (n *Node) scoreParams() *pubsub.PeerScoreParams {
	ps := PeerScoreParams()
	ps.AppSpecificScore = func(p peer.ID) float64 {
		n.penMu.Lock()
		defer n.penMu.Unlock()
		return PenaltyScore * n.penalties[p]
	}
	return ps
}
