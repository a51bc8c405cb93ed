package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// Client implements core.API by calling a daemon over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

var _ core.API = (*Client)(nil)

// ErrNoDaemon means nothing answers on the socket.
var ErrNoDaemon = errors.New("lebowskid is not running")

// ErrPermission means a daemon's socket exists but this user may not
// connect to it.
var ErrPermission = errors.New("permission denied on the lebowskid socket")

// Dial returns a client when a daemon answers on socket within 2 s.
func Dial(ctx context.Context, socket string) (*Client, error) {
	if _, err := os.Stat(socket); err != nil {
		return nil, fmt.Errorf("%w (no socket at %s)", ErrNoDaemon, socket)
	}
	c := New(socket)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.Status(cctx); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%w: %s", ErrPermission, socket)
		}
		return nil, fmt.Errorf("%w on %s: %v", ErrNoDaemon, socket, err)
	}
	return c, nil
}

// New returns a client for socket without checking that a daemon answers.
func New(socket string) *Client {
	return &Client{socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// Socket is the socket the client talks to.
func (c *Client) Socket() string { return c.socket }

func (c *Client) request(ctx context.Context, method, path string, body io.Reader, ctype string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://lebowskid"+path, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lebowskid %s: %w", path, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var ae apiError
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ae)
	msg := errors.New(ae.Error)
	switch ae.Kind {
	case kindNotFound:
		return nil, fmt.Errorf("%w: %s", core.ErrNotFound, trimPrefix(ae.Error, core.ErrNotFound))
	case kindInvalid:
		return nil, core.Invalid(msg)
	case kindOffline:
		return nil, fmt.Errorf("%w: %s", core.ErrOffline, ae.Error)
	case kindNoIdentity:
		return nil, fmt.Errorf("%w: %s", core.ErrNoIdentity, ae.Error)
	case kindReadOnly:
		return nil, fmt.Errorf("%w: %s", ErrReadOnly, trimPrefix(ae.Error, ErrReadOnly))
	}
	return nil, fmt.Errorf("lebowskid %s: %s (HTTP %d)", path, ae.Error, resp.StatusCode)
}

// trimPrefix keeps a relayed "not found: …" message from doubling its prefix.
func trimPrefix(msg string, sentinel error) string {
	p := sentinel.Error() + ": "
	if len(msg) >= len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.request(ctx, method, path, body, ctype)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("lebowskid %s: decode reply: %w", path, err)
	}
	return nil
}

func (c *Client) Info(ctx context.Context, q core.InfoQuery) (*core.InfoResult, error) {
	v := url.Values{"package": {q.Package}, "version": {q.DebianVersion}, "opinion": {q.Opinion}, "opinion_cid": {q.OpinionCID}, "all": {fmt.Sprint(q.All)}}
	var out core.InfoResult
	return &out, c.do(ctx, http.MethodGet, "/v1/info?"+v.Encode(), nil, &out)
}

func (c *Client) Verify(ctx context.Context, req core.VerifyRequest) (*core.VerifyResult, error) {
	var out core.VerifyResult
	return &out, c.do(ctx, http.MethodPost, "/v1/verify", req, &out)
}

func (c *Client) Decide(ctx context.Context, req core.DecideRequest) (*core.Decision, error) {
	var out core.Decision
	return &out, c.do(ctx, http.MethodPost, "/v1/decide", req, &out)
}

func (c *Client) Claims(ctx context.Context, q core.ClaimsQuery) ([]core.ClaimRow, error) {
	var out []core.ClaimRow
	return out, c.do(ctx, http.MethodGet, "/v1/claims?"+url.Values{"package": {q.Package}}.Encode(), nil, &out)
}

func (c *Client) Claim(ctx context.Context, id string) (*core.ClaimDetail, error) {
	var out core.ClaimDetail
	return &out, c.do(ctx, http.MethodGet, "/v1/claims/"+url.PathEscape(id), nil, &out)
}

func (c *Client) InToto(ctx context.Context, id string) (*attest.DSSEEnvelope, error) {
	var out attest.DSSEEnvelope
	return &out, c.do(ctx, http.MethodGet, "/v1/claims/"+url.PathEscape(id)+"/in-toto", nil, &out)
}

func (c *Client) Mirror(ctx context.Context, ref string) (*core.MirrorResult, error) {
	var out core.MirrorResult
	return &out, c.do(ctx, http.MethodPost, "/v1/mirror", subscribe{Ref: ref, On: true}, &out)
}

func (c *Client) ImportClaims(ctx context.Context, wires [][]byte) ([]core.ImportResult, error) {
	var out []core.ImportResult
	return out, c.do(ctx, http.MethodPost, "/v1/claims", wires, &out)
}

func (c *Client) RecordBuild(ctx context.Context, b core.BuildRecord) (*core.RecordResult, error) {
	var out core.RecordResult
	return &out, c.do(ctx, http.MethodPost, "/v1/builds", b, &out)
}

func (c *Client) ReportMismatch(ctx context.Context, m core.Mismatch) (*core.RecordResult, error) {
	var out core.RecordResult
	return &out, c.do(ctx, http.MethodPost, "/v1/mismatches", m, &out)
}

func (c *Client) Keys(ctx context.Context) ([]core.KeyInfo, error) {
	var out []core.KeyInfo
	return out, c.do(ctx, http.MethodGet, "/v1/keys", nil, &out)
}

func (c *Client) Key(ctx context.Context, fpr string) (*core.KeyInfo, error) {
	var out core.KeyInfo
	return &out, c.do(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(fpr), nil, &out)
}

func (c *Client) ImportKey(ctx context.Context, pub []byte, t attest.Trust, src string) (*core.KeyInfo, error) {
	var out core.KeyInfo
	return &out, c.do(ctx, http.MethodPost, "/v1/keys", importKey{Key: pub, Trust: t, Source: src}, &out)
}

func (c *Client) SetTrust(ctx context.Context, fpr string, t attest.Trust, note string) error {
	return c.do(ctx, http.MethodPost, "/v1/keys/trust", setTrust{Fingerprint: fpr, Trust: t, Note: note}, nil)
}

func (c *Client) CertifyKey(ctx context.Context, fpr string) (*core.KeyResult, error) {
	var out core.KeyResult
	return &out, c.do(ctx, http.MethodPost, "/v1/keys/certify", keyRef{Fingerprint: fpr}, &out)
}

func (c *Client) RevokeKey(ctx context.Context, req core.RevokeRequest) (*core.KeyResult, error) {
	var out core.KeyResult
	return &out, c.do(ctx, http.MethodPost, "/v1/keys/revoke", req, &out)
}

func (c *Client) AnnounceKey(ctx context.Context, fpr string) (*core.KeyResult, error) {
	var out core.KeyResult
	return &out, c.do(ctx, http.MethodPost, "/v1/keys/announce", keyRef{Fingerprint: fpr}, &out)
}

func (c *Client) PutBlob(ctx context.Context, data []byte) (string, error) {
	resp, err := c.request(ctx, http.MethodPost, "/v1/blobs", bytes.NewReader(data), "application/octet-stream")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		CID string `json:"cid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("lebowskid /v1/blobs: decode reply: %w", err)
	}
	return out.CID, nil
}

func (c *Client) GetBlob(ctx context.Context, cid string) ([]byte, error) {
	return c.blob(ctx, "/v1/blobs/"+url.PathEscape(cid))
}

func (c *Client) FetchBlob(ctx context.Context, cid string) ([]byte, error) {
	return c.blob(ctx, "/v1/blobs/"+url.PathEscape(cid)+"?fetch=true")
}

func (c *Client) blob(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.request(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBlob+1))
	if err != nil {
		return nil, fmt.Errorf("lebowskid %s: %w", path, err)
	}
	if len(b) > maxBlob {
		return nil, fmt.Errorf("lebowskid %s: blob larger than %d bytes", path, maxBlob)
	}
	return b, nil
}

func (c *Client) Opinion(ctx context.Context, q core.OpinionQuery) (*core.OpinionBundle, error) {
	var out core.OpinionBundle
	v := url.Values{"package": {q.Package}, "name": {q.Name}, "cid": {q.CID}}
	return &out, c.do(ctx, http.MethodGet, "/v1/opinions?"+v.Encode(), nil, &out)
}

func (c *Client) Status(ctx context.Context) (*core.Status, error) {
	var out core.Status
	return &out, c.do(ctx, http.MethodGet, "/v1/status", nil, &out)
}

func (c *Client) Peers(ctx context.Context) ([]core.PeerInfo, error) {
	var out []core.PeerInfo
	return out, c.do(ctx, http.MethodGet, "/v1/peers", nil, &out)
}

func (c *Client) Subscribe(ctx context.Context, ref string, on bool) ([]string, error) {
	var out []string
	return out, c.do(ctx, http.MethodPost, "/v1/subscriptions", subscribe{Ref: ref, On: on}, &out)
}

// Events streams the daemon's events until ctx ends or the daemon stops.
func (c *Client) Events(ctx context.Context) (<-chan core.Event, error) {
	resp, err := c.request(ctx, http.MethodGet, "/v1/events", nil, "")
	if err != nil {
		return nil, err
	}
	ch := make(chan core.Event, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var ev core.Event
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}
