package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// A build intent says "builder B is rebuilding recipe R now, expect about
// N seconds; count me until Issued+TTL unless I renew". Nodes gossip them
// so that rebuild work is shared: a node skips recipes that enough
// trusted builders are already building (docs/SCHEDULER.md). An intent is
// signed by the builder key, like a claim, so nobody can make a trusted
// builder look busy, and it is worth nothing once it expires.

// PayloadTypeIntent is the payload type of a signed build intent.
const PayloadTypeIntent = "application/vnd.lebowski.intent.v1+json"

// Intent bounds.
const (
	// MaxIntentSize bounds an encoded signed intent.
	MaxIntentSize = 4 << 10
	// MaxIntentTTL is the longest an intent may ask to be counted without
	// being renewed.
	MaxIntentTTL = 6 * time.Hour
	// MaxIntentAge is how long before Issued an intent's Started may lie:
	// a build renews its intent while it runs, for at most this long.
	MaxIntentAge = 7 * 24 * time.Hour
)

// Intent states.
const (
	IntentBuilding  = "building"
	IntentWithdrawn = "withdrawn" // the builder stopped without a claim (error, backed off)
)

// ErrInvalidIntent wraps every reason an intent is refused; it also
// unwraps to ErrInvalid.
var ErrInvalidIntent = errors.New("invalid build intent")

// Intent is one builder's statement that it is rebuilding a recipe. The
// recipe is the package and the opinion's content (OpinionCID; "" with
// opinion "vanilla" for an unmodified build).
type Intent struct {
	Builder    string `json:"builder"`
	Package    string `json:"package"`
	Opinion    string `json:"opinion"`
	OpinionCID string `json:"opinion_cid,omitempty"`
	State      string `json:"state"`
	// Started is when the builder chose the recipe: among intents for one
	// recipe, earlier ones rank first (ties by fingerprint). Renewals keep
	// it.
	Started time.Time `json:"started"`
	// Issued is when this message was signed; it is counted until
	// Issued+TTL (by the receiver's clock: Received+TTL, see
	// docs/SCHEDULER.md).
	Issued time.Time `json:"issued"`
	TTL    int64     `json:"ttl_seconds"`
	// Expect is the builder's guess of the build's duration (display).
	Expect int64 `json:"expect_seconds,omitempty"`
}

// Key is the recipe the intent is for: "<package>/<opinion CID>", or
// "<package>/vanilla".
func (in *Intent) Key() string { return RecipeKey(in.Package, in.OpinionCID) }

// RecipeKey names a unit of rebuild work: a package and the content of the
// opinion applied to it ("" = vanilla).
func RecipeKey(pkg, opinionCID string) string {
	if opinionCID == "" {
		return pkg + "/" + vocab.Vanilla
	}
	return pkg + "/" + opinionCID
}

// TTLDuration is TTL as a duration.
func (in *Intent) TTLDuration() time.Duration { return time.Duration(in.TTL) * time.Second }

// check validates the fields; now.IsZero() skips the time checks.
func (in *Intent) check(now time.Time, skew time.Duration) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidIntent, fmt.Sprintf(format, a...))
	}
	if err := vocab.CheckFingerprint(in.Builder); err != nil {
		return fail("%v", err)
	}
	if err := vocab.CheckPackage(in.Package); err != nil {
		return fail("%v", err)
	}
	switch {
	case in.Opinion == vocab.Vanilla && in.OpinionCID != "":
		return fail("a vanilla build names no opinion CID")
	case in.Opinion != vocab.Vanilla:
		if err := vocab.CheckOpinionName(in.Opinion); err != nil {
			return fail("%v", err)
		}
		if _, err := vocab.ParseCID(in.OpinionCID); err != nil {
			return fail("opinion_cid: %v", err)
		}
	}
	if in.State != IntentBuilding && in.State != IntentWithdrawn {
		return fail("state %q (want %q or %q)", in.State, IntentBuilding, IntentWithdrawn)
	}
	if in.TTL < 1 || in.TTL > int64(MaxIntentTTL/time.Second) { // compared in seconds: no overflow
		return fail("ttl_seconds %d not in 1..%d", in.TTL, int64(MaxIntentTTL/time.Second))
	}
	if in.Expect < 0 || in.Expect > int64(MaxIntentAge/time.Second) {
		return fail("expect_seconds %d not in 0..%d", in.Expect, int64(MaxIntentAge/time.Second))
	}
	if in.Started.After(in.Issued) || in.Issued.Sub(in.Started) > MaxIntentAge {
		return fail("started %s must be at most %s before issued %s", in.Started.Format(time.RFC3339), MaxIntentAge, in.Issued.Format(time.RFC3339))
	}
	if now.IsZero() {
		return nil
	}
	if in.Issued.After(now.Add(skew)) {
		return fail("issued %s is in the future", in.Issued.Format(time.RFC3339))
	}
	if now.Sub(in.Issued) > in.TTLDuration()+skew {
		return fail("expired: issued %s with a ttl of %ds", in.Issued.Format(time.RFC3339), in.TTL)
	}
	return nil
}

// intentWire is a signed intent on the wire: the canonical intent JSON
// and an armored detached signature over exactly those bytes (the form
// claims use).
type intentWire struct {
	PayloadType string `json:"payload_type"`
	Payload     []byte `json:"payload"`
	Signature   string `json:"signature"`
}

// SignIntent signs in and returns its wire form. Builder is set to id's
// fingerprint; times are cut to milliseconds, so that intents started in
// the same second still rank by time.
func SignIntent(id *Identity, in Intent) ([]byte, error) {
	in.Builder = id.Fingerprint()
	in.Started = in.Started.UTC().Truncate(time.Millisecond)
	in.Issued = in.Issued.UTC().Truncate(time.Millisecond)
	if err := in.check(time.Time{}, 0); err != nil {
		return nil, fmt.Errorf("sign intent: %w", err)
	}
	payload, err := json.Marshal(&in)
	if err != nil {
		return nil, fmt.Errorf("sign intent: %w", err)
	}
	armored, err := detachSign(id, payload)
	if err != nil {
		return nil, fmt.Errorf("sign intent: %w", err)
	}
	return json.Marshal(intentWire{PayloadType: PayloadTypeIntent, Payload: payload, Signature: armored})
}

// VerifyIntent decodes a signed intent strictly (size, no unknown fields,
// canonical payload), checks its fields and times against now and the
// signature by the builder's key from keys. A builder keys does not know
// is ErrUnknownKey (the intent cannot count here). Every other error
// wraps ErrInvalidIntent and ErrInvalid.
func VerifyIntent(b []byte, keys KeyLookup, now time.Time) (*Intent, error) {
	if len(b) > MaxIntentSize {
		return nil, bad("verify intent", fmt.Errorf("%w: %d bytes (max %d)", ErrInvalidIntent, len(b), MaxIntentSize))
	}
	var w intentWire
	if err := strictJSON(b, &w); err != nil {
		return nil, bad("verify intent", fmt.Errorf("%w: %v", ErrInvalidIntent, err))
	}
	if w.PayloadType != PayloadTypeIntent {
		return nil, bad("verify intent", fmt.Errorf("%w: payload_type %q (want %q)", ErrInvalidIntent, w.PayloadType, PayloadTypeIntent))
	}
	var in Intent
	if err := strictJSON(w.Payload, &in); err != nil {
		return nil, bad("verify intent", fmt.Errorf("%w: payload: %v", ErrInvalidIntent, err))
	}
	if again, err := json.Marshal(&in); err != nil || !bytes.Equal(again, w.Payload) {
		return nil, bad("verify intent", fmt.Errorf("%w: payload is not in canonical form", ErrInvalidIntent))
	}
	if err := in.check(now, DefaultSkew); err != nil {
		return nil, bad("verify intent", err)
	}
	var signer *openpgp.Entity
	if keys != nil {
		signer = keys.Lookup(in.Builder)
	}
	if signer == nil {
		return nil, fmt.Errorf("verify intent: %w: %s", ErrUnknownKey, in.Builder)
	}
	if err := checkSignature(signer, w.Payload, w.Signature, now, DefaultSkew); err != nil {
		return nil, bad("verify intent", err)
	}
	return &in, nil
}

// strictJSON decodes one JSON value with no unknown fields and nothing
// after it.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}
