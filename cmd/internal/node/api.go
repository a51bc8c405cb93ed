package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/store"
)

// Backend is what the CLI needs from a node: the local store (Local) or a
// running lebowskid (Client).
type Backend interface {
	Info(ctx context.Context, pkg, debVersion, opinion string, all bool) (*InfoResult, error)
	Verify(ctx context.Context, req VerifyRequest) (*VerifyResult, error)
	ImportClaims(ctx context.Context, wires [][]byte) ([]ImportResult, error)
	Claims(ctx context.Context, pkg string) ([]ClaimRow, error)
	Keys(ctx context.Context) ([]store.KeyInfo, error)
	ImportKey(ctx context.Context, pub []byte, trust attest.Trust, source string) (store.KeyInfo, error)
	SetTrust(ctx context.Context, fpr string, trust attest.Trust, note string) error
}

// Local adapts a Service to Backend.
type Local struct{ *Service }

func (l Local) Keys(context.Context) ([]store.KeyInfo, error) { return l.Service.Keys() }
func (l Local) ImportKey(_ context.Context, pub []byte, t attest.Trust, src string) (store.KeyInfo, error) {
	return l.Service.ImportKey(pub, t, src)
}
func (l Local) SetTrust(_ context.Context, fpr string, t attest.Trust, note string) error {
	return l.Service.SetTrust(fpr, t, note)
}

// PeerInfo is one connected peer, as the daemon reports it.
type PeerInfo struct {
	ID        string    `json:"id"`
	Addrs     []string  `json:"addrs"`
	Topics    []string  `json:"topics,omitempty"`
	Score     float64   `json:"score"`
	Connected time.Time `json:"connected,omitempty"`
}

// Status is the daemon's self-description.
type Status struct {
	PeerID        string    `json:"peer_id"`
	Builder       string    `json:"builder"`
	Addrs         []string  `json:"addrs"`
	Subscriptions []string  `json:"subscriptions"`
	Peers         int       `json:"peers"`
	Claims        int       `json:"claims"`
	QueuedBuilds  int       `json:"queued_builds"`
	RunningBuilds []string  `json:"running_builds"`
	Started       time.Time `json:"started"`
}

// Event is one item of the daemon's event stream.
type Event struct {
	Time    time.Time       `json:"time"`
	Type    string          `json:"type"` // claim, verdict, build-started, build-finished, peer
	Package string          `json:"package,omitempty"`
	Opinion string          `json:"opinion,omitempty"`
	ClaimID string          `json:"claim_id,omitempty"`
	From    string          `json:"from,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// DaemonOps are the operations only a running daemon has.
type DaemonOps interface {
	Status(ctx context.Context) (*Status, error)
	Peers(ctx context.Context) ([]PeerInfo, error)
	Subscribe(ctx context.Context, topic string, on bool) ([]string, error)
	Events(ctx context.Context) (<-chan Event, func())
}

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
	Kind  string `json:"kind"` // not_found, invalid, internal
}

// NewHandler serves the local API (HTTP+JSON) over the daemon's unix
// socket. docs/API.md lists the endpoints.
func NewHandler(b Backend, d DaemonOps) http.Handler {
	mux := http.NewServeMux()
	q := func(r *http.Request, k string) string { return r.URL.Query().Get(k) }
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		res, err := b.Info(r.Context(), q(r, "package"), q(r, "version"), q(r, "opinion"), q(r, "all") == "true")
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/verify", func(w http.ResponseWriter, r *http.Request) {
		var req VerifyRequest
		if err := readJSON(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		res, err := b.Verify(r.Context(), req)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/claims", func(w http.ResponseWriter, r *http.Request) {
		res, err := b.Claims(r.Context(), q(r, "package"))
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/claims", func(w http.ResponseWriter, r *http.Request) {
		var wires [][]byte
		if err := readJSON(r, &wires); err != nil {
			reply(w, nil, err)
			return
		}
		res, err := b.ImportClaims(r.Context(), wires)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		res, err := b.Keys(r.Context())
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key    []byte       `json:"key"`
			Trust  attest.Trust `json:"trust"`
			Source string       `json:"source"`
		}
		if err := readJSON(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		res, err := b.ImportKey(r.Context(), req.Key, req.Trust, req.Source)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/keys/trust", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Fingerprint string       `json:"fingerprint"`
			Trust       attest.Trust `json:"trust"`
			Note        string       `json:"note"`
		}
		if err := readJSON(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, map[string]bool{"ok": true}, b.SetTrust(r.Context(), req.Fingerprint, req.Trust, req.Note))
	})
	if d != nil {
		mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
			res, err := d.Status(r.Context())
			reply(w, res, err)
		})
		mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
			res, err := d.Peers(r.Context())
			reply(w, res, err)
		})
		mux.HandleFunc("POST /v1/subscriptions", func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Topic string `json:"topic"`
				On    bool   `json:"on"`
			}
			if err := readJSON(r, &req); err != nil {
				reply(w, nil, err)
				return
			}
			res, err := d.Subscribe(r.Context(), req.Topic, req.On)
			reply(w, res, err)
		})
		mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
			ch, cancel := d.Events(r.Context())
			defer cancel()
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			fl, _ := w.(http.Flusher)
			enc := json.NewEncoder(w)
			if fl != nil {
				fl.Flush()
			}
			for {
				select {
				case <-r.Context().Done():
					return
				case ev, ok := <-ch:
					if !ok {
						return
					}
					if enc.Encode(ev) != nil {
						return
					}
					if fl != nil {
						fl.Flush()
					}
				}
			}
		})
	}
	return mux
}

const maxRequest = 64 << 20

func readJSON(r *http.Request, v any) error {
	d := json.NewDecoder(io.LimitReader(r.Body, maxRequest))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return &InputError{Err: fmt.Errorf("request body: %w", err)}
	}
	return nil
}

// InputError marks a bad request.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code, kind := http.StatusInternalServerError, "internal"
		var ie *InputError
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
			code, kind = http.StatusNotFound, "not_found"
		case errors.As(err, &ie), errors.Is(err, store.ErrBadClaim), errors.Is(err, attest.ErrInvalid):
			code, kind = http.StatusBadRequest, "invalid"
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(apiError{Error: err.Error(), Kind: kind})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Client talks to lebowskid over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// ErrNoDaemon means nothing listens on the socket.
var ErrNoDaemon = errors.New("lebowskid is not running")

// Dial returns a client if a daemon answers on socket.
func Dial(ctx context.Context, socket string) (*Client, error) {
	if _, err := os.Stat(socket); err != nil {
		return nil, fmt.Errorf("%w (no socket at %s)", ErrNoDaemon, socket)
	}
	c := &Client{socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
	var st Status
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.do(cctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDaemon, err)
	}
	return c, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://lebowskid"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("lebowskid %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ae apiError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ae)
		switch ae.Kind {
		case "not_found":
			return fmt.Errorf("%w: %s", ErrNotFound, ae.Error)
		case "invalid":
			return &InputError{Err: errors.New(ae.Error)}
		}
		return fmt.Errorf("lebowskid %s: %s (HTTP %d)", path, ae.Error, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Client) Info(ctx context.Context, pkg, ver, op string, all bool) (*InfoResult, error) {
	var out InfoResult
	v := url.Values{"package": {pkg}, "version": {ver}, "opinion": {op}, "all": {fmt.Sprint(all)}}
	return &out, c.do(ctx, http.MethodGet, "/v1/info?"+v.Encode(), nil, &out)
}
func (c *Client) Verify(ctx context.Context, req VerifyRequest) (*VerifyResult, error) {
	var out VerifyResult
	return &out, c.do(ctx, http.MethodPost, "/v1/verify", req, &out)
}
func (c *Client) ImportClaims(ctx context.Context, wires [][]byte) ([]ImportResult, error) {
	var out []ImportResult
	return out, c.do(ctx, http.MethodPost, "/v1/claims", wires, &out)
}
func (c *Client) Claims(ctx context.Context, pkg string) ([]ClaimRow, error) {
	var out []ClaimRow
	return out, c.do(ctx, http.MethodGet, "/v1/claims?"+url.Values{"package": {pkg}}.Encode(), nil, &out)
}
func (c *Client) Keys(ctx context.Context) ([]store.KeyInfo, error) {
	var out []store.KeyInfo
	return out, c.do(ctx, http.MethodGet, "/v1/keys", nil, &out)
}
func (c *Client) ImportKey(ctx context.Context, pub []byte, t attest.Trust, src string) (store.KeyInfo, error) {
	var out store.KeyInfo
	body := map[string]any{"key": pub, "trust": t, "source": src}
	return out, c.do(ctx, http.MethodPost, "/v1/keys", body, &out)
}
func (c *Client) SetTrust(ctx context.Context, fpr string, t attest.Trust, note string) error {
	return c.do(ctx, http.MethodPost, "/v1/keys/trust", map[string]any{"fingerprint": fpr, "trust": t, "note": note}, nil)
}
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var out Status
	return &out, c.do(ctx, http.MethodGet, "/v1/status", nil, &out)
}
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	var out []PeerInfo
	return out, c.do(ctx, http.MethodGet, "/v1/peers", nil, &out)
}
func (c *Client) Subscribe(ctx context.Context, topic string, on bool) ([]string, error) {
	var out []string
	return out, c.do(ctx, http.MethodPost, "/v1/subscriptions", map[string]any{"topic": topic, "on": on}, &out)
}

// Events streams the daemon's events until ctx ends.
func (c *Client) Events(ctx context.Context, fn func(Event)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://lebowskid/v1/events", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var ev Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			fn(ev)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
