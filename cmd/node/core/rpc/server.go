// Package rpc carries the core API over the daemon's unix socket as
// HTTP+JSON: Handler serves a core.API, Client implements core.API by
// calling it (kubo's client/rpc plays this part). docs/CLI.md lists the
// endpoints.
package rpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// Limits on request bodies.
const (
	maxJSON = 64 << 20
	maxBlob = core.MaxBlob
)

// Error kinds on the wire, mapped to core's sentinels by the client.
const (
	kindNotFound   = "not_found"
	kindInvalid    = "invalid"
	kindOffline    = "offline"
	kindNoIdentity = "no_identity"
	kindInternal   = "internal"
	kindReadOnly   = "read_only"
)

// ErrReadOnly is the answer of a read-only socket to a write.
var ErrReadOnly = errors.New("this lebowskid socket is read-only")

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// Handler serves api over HTTP+JSON.
func Handler(api core.API) http.Handler {
	mux := http.NewServeMux()
	q := func(r *http.Request, k string) string { return r.URL.Query().Get(k) }
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.Info(r.Context(), core.InfoQuery{Package: q(r, "package"), DebianVersion: q(r, "version"),
			Opinion: q(r, "opinion"), OpinionCID: q(r, "opinion_cid"), All: q(r, "all") == "true"})
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/verify", jsonIn(func(r *http.Request, req core.VerifyRequest) (any, error) {
		return api.Verify(r.Context(), req)
	}))
	mux.HandleFunc("POST /v1/decide", jsonIn(func(r *http.Request, req core.DecideRequest) (any, error) {
		return api.Decide(r.Context(), req)
	}))
	mux.HandleFunc("GET /v1/claims", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.Claims(r.Context(), core.ClaimsQuery{Package: q(r, "package")})
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/claims/{id}", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.Claim(r.Context(), r.PathValue("id"))
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/claims/{id}/in-toto", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.InToto(r.Context(), r.PathValue("id"))
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/claims", jsonIn(func(r *http.Request, wires [][]byte) (any, error) {
		return api.ImportClaims(r.Context(), wires)
	}))
	mux.HandleFunc("POST /v1/builds", jsonIn(func(r *http.Request, b core.BuildRecord) (any, error) {
		return api.RecordBuild(r.Context(), b)
	}))
	mux.HandleFunc("POST /v1/mismatches", jsonIn(func(r *http.Request, m core.Mismatch) (any, error) {
		return api.ReportMismatch(r.Context(), m)
	}))
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.Keys(r.Context())
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/keys/{fpr}", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.Key(r.Context(), r.PathValue("fpr"))
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/keys", jsonIn(func(r *http.Request, req importKey) (any, error) {
		return api.ImportKey(r.Context(), req.Key, req.Trust, req.Source)
	}))
	mux.HandleFunc("POST /v1/keys/trust", jsonIn(func(r *http.Request, req setTrust) (any, error) {
		return map[string]bool{"ok": true}, api.SetTrust(r.Context(), req.Fingerprint, req.Trust, req.Note)
	}))
	mux.HandleFunc("POST /v1/keys/certify", jsonIn(func(r *http.Request, req keyRef) (any, error) {
		return api.CertifyKey(r.Context(), req.Fingerprint)
	}))
	mux.HandleFunc("POST /v1/keys/revoke", jsonIn(func(r *http.Request, req core.RevokeRequest) (any, error) {
		return api.RevokeKey(r.Context(), req)
	}))
	mux.HandleFunc("POST /v1/keys/announce", jsonIn(func(r *http.Request, req keyRef) (any, error) {
		return api.AnnounceKey(r.Context(), req.Fingerprint)
	}))
	mux.HandleFunc("POST /v1/blobs", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBlob))
		if err != nil {
			reply(w, nil, core.Invalid(fmt.Errorf("blob body: %w", err)))
			return
		}
		c, err := api.PutBlob(r.Context(), data)
		reply(w, map[string]string{"cid": c}, err)
	})
	mux.HandleFunc("GET /v1/opinions", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.Opinion(r.Context(), core.OpinionQuery{Package: q(r, "package"), Name: q(r, "name"), CID: q(r, "cid")})
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/blobs/{cid}", func(w http.ResponseWriter, r *http.Request) {
		get := api.GetBlob
		if q(r, "fetch") == "true" {
			get = api.FetchBlob
		}
		data, err := get(r.Context(), r.PathValue("cid"))
		if err != nil {
			reply(w, nil, err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.Status(r.Context())
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		res, err := api.Peers(r.Context())
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/subscriptions", jsonIn(func(r *http.Request, req subscribe) (any, error) {
		return api.Subscribe(r.Context(), req.Ref, req.On)
	}))
	mux.HandleFunc("POST /v1/mirror", jsonIn(func(r *http.Request, req subscribe) (any, error) {
		return api.Mirror(r.Context(), req.Ref)
	}))
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		ch, err := api.Events(r.Context())
		if err != nil {
			reply(w, nil, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		fl, _ := w.(http.Flusher)
		if fl != nil {
			fl.Flush()
		}
		enc := json.NewEncoder(w)
		for ev := range ch {
			if enc.Encode(ev) != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, fmt.Errorf("%w: no endpoint %s %s", core.ErrNotFound, r.Method, r.URL.Path))
	})
	return mux
}

// ReadOnly serves only the reading part of h: GET requests, verify and
// decide.
// The system daemon's public socket (group lebowski) is served through
// it, so members can ask but never change the node's claims, trust,
// blobs or subscriptions.
func ReadOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || (r.Method == http.MethodPost && (r.URL.Path == "/v1/verify" || r.URL.Path == "/v1/decide")) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(apiError{Kind: kindReadOnly, Error: fmt.Sprintf("%v: %s %s changes the node; run the command as the daemon's owner (root) on its private socket", ErrReadOnly, r.Method, r.URL.Path)})
	})
}

type importKey struct {
	Key    []byte       `json:"key"`
	Trust  attest.Trust `json:"trust"`
	Source string       `json:"source"`
}

type setTrust struct {
	Fingerprint string       `json:"fingerprint"`
	Trust       attest.Trust `json:"trust"`
	Note        string       `json:"note"`
}

type keyRef struct {
	Fingerprint string `json:"fingerprint"`
}

type subscribe struct {
	Ref string `json:"ref"`
	On  bool   `json:"on"`
}

// jsonIn decodes a JSON body strictly into T and replies with fn's result.
func jsonIn[T any](fn func(*http.Request, T) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var v T
		d := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSON))
		d.DisallowUnknownFields()
		if err := d.Decode(&v); err != nil {
			reply(w, nil, core.Invalid(fmt.Errorf("request body: %w", err)))
			return
		}
		res, err := fn(r, v)
		reply(w, res, err)
	}
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code, kind := http.StatusInternalServerError, kindInternal
		switch {
		case core.IsNotFound(err):
			code, kind = http.StatusNotFound, kindNotFound
		case core.IsInvalid(err), errors.Is(err, attest.ErrInvalid):
			code, kind = http.StatusBadRequest, kindInvalid
		case errors.Is(err, core.ErrOffline):
			code, kind = http.StatusServiceUnavailable, kindOffline
		case errors.Is(err, core.ErrNoIdentity):
			code, kind = http.StatusConflict, kindNoIdentity
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(apiError{Error: err.Error(), Kind: kind})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}
