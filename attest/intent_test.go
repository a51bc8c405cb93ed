package attest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

var intentNow = time.Now().UTC().Truncate(time.Second) // signatures are made now: OpenPGP refuses ones made after the verification time

func testIntent() Intent {
	return Intent{Package: "hello", Opinion: "o3", OpinionCID: vocab.CID([]byte("opinion o3")), State: IntentBuilding,
		Started: intentNow.Add(-time.Minute), Issued: intentNow, TTL: 900, Expect: 120}
}

func signIntent(tb testing.TB, id *Identity, mod func(*Intent)) []byte {
	tb.Helper()
	in := testIntent()
	if mod != nil {
		mod(&in)
	}
	b, err := SignIntent(id, in)
	if err != nil {
		tb.Fatalf("SignIntent: %v", err)
	}
	return b
}

func TestIntentRoundTrip(t *testing.T) {
	a, _ := testIdentities(t)
	b := signIntent(t, a, nil)
	in, err := VerifyIntent(b, NewKeyring(a.Entity), intentNow)
	if err != nil {
		t.Fatal(err)
	}
	want := testIntent()
	want.Builder = a.Fingerprint()
	if *in != want {
		t.Fatalf("got %+v\nwant %+v", *in, want)
	}
	if in.Key() != "hello/"+want.OpinionCID {
		t.Errorf("Key() = %q", in.Key())
	}
	v := signIntent(t, a, func(in *Intent) { in.Opinion, in.OpinionCID = vocab.Vanilla, "" })
	got, err := VerifyIntent(v, NewKeyring(a.Entity), intentNow)
	if err != nil || got.Key() != "hello/vanilla" {
		t.Fatalf("vanilla intent: %v %v", got, err)
	}
}

// TestIntentRefused: every way an intent can be wrong is refused with
// ErrInvalid (so the gossip validator rejects and scores it), except an
// unknown key, which is only "cannot count here".
func TestIntentRefused(t *testing.T) {
	a, b := testIdentities(t)
	keys := NewKeyring(a.Entity, b.Entity)
	good := signIntent(t, a, nil)
	var w intentWire
	if err := json.Unmarshal(good, &w); err != nil {
		t.Fatal(err)
	}
	rewire := func(f func(*intentWire)) []byte {
		c := w
		f(&c)
		out, _ := json.Marshal(c)
		return out
	}
	otherSig := func() string {
		var o intentWire
		_ = json.Unmarshal(signIntent(t, b, nil), &o)
		return o.Signature
	}()
	cases := []struct {
		name string
		in   []byte
		now  time.Time
	}{
		{"empty", nil, intentNow},
		{"not json", []byte("\x00\x01"), intentNow},
		{"oversize", append(append([]byte(nil), good...), bytes.Repeat([]byte(" "), MaxIntentSize)...), intentNow},
		{"trailing", append(append([]byte(nil), good...), []byte("{}")...), intentNow},
		{"unknown field", []byte(strings.Replace(string(good), `"payload_type"`, `"x":1,"payload_type"`, 1)), intentNow},
		{"claim payload type", rewire(func(w *intentWire) { w.PayloadType = PayloadTypeV1 }), intentNow},
		{"payload changed", rewire(func(w *intentWire) {
			w.Payload = bytes.Replace(w.Payload, []byte(`"ttl_seconds":900`), []byte(`"ttl_seconds":901`), 1)
		}), intentNow},
		{"payload not canonical", rewire(func(w *intentWire) { w.Payload = append([]byte(" "), w.Payload...) }), intentNow},
		{"signature of another key", rewire(func(w *intentWire) { w.Signature = otherSig }), intentNow},
		{"signature cut", rewire(func(w *intentWire) { w.Signature = w.Signature[:len(w.Signature)/2] }), intentNow},
		{"expired", good, intentNow.Add(900*time.Second + DefaultSkew + time.Second)},
		{"from the future", good, intentNow.Add(-DefaultSkew - time.Second)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyIntent(c.in, keys, c.now)
			checkErr(t, err, nil)
		})
	}
	if _, err := VerifyIntent(good, NewKeyring(b.Entity), intentNow); !errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrInvalid) {
		t.Errorf("unknown key: %v (want ErrUnknownKey, not ErrInvalid)", err)
	}
}

func TestSignIntentChecksFields(t *testing.T) {
	a, _ := testIdentities(t)
	for name, mod := range map[string]func(*Intent){
		"bad package":           func(in *Intent) { in.Package = "Hello World" },
		"bad opinion":           func(in *Intent) { in.Opinion = "o-3" },
		"vanilla with cid":      func(in *Intent) { in.Opinion = vocab.Vanilla },
		"opinion without cid":   func(in *Intent) { in.OpinionCID = "" },
		"bad state":             func(in *Intent) { in.State = "maybe" },
		"ttl zero":              func(in *Intent) { in.TTL = 0 },
		"ttl too long":          func(in *Intent) { in.TTL = int64(MaxIntentTTL/time.Second) + 1 },
		"ttl that overflows":    func(in *Intent) { in.TTL = 18446744074 },
		"negative expect":       func(in *Intent) { in.Expect = -1 },
		"started after issued":  func(in *Intent) { in.Started = in.Issued.Add(time.Second) },
		"started long before":   func(in *Intent) { in.Started = in.Issued.Add(-MaxIntentAge - time.Second) },
		"cid is not a cid":      func(in *Intent) { in.OpinionCID = "bafy-nope" },
		"state empty":           func(in *Intent) { in.State = "" },
		"package empty":         func(in *Intent) { in.Package = "" },
		"opinion name reserved": func(in *Intent) { in.Opinion = "deb12u1" },
	} {
		in := testIntent()
		mod(&in)
		if _, err := SignIntent(a, in); !errors.Is(err, ErrInvalidIntent) {
			t.Errorf("%s: SignIntent = %v, want ErrInvalidIntent", name, err)
		}
	}
}

// FuzzVerifyIntent: never panics; whatever is accepted re-verifies and
// re-signs to an intent with the same fields.
func FuzzVerifyIntent(f *testing.F) {
	a, _ := testIdentities(f)
	good := signIntent(f, a, nil)
	f.Add(good)
	f.Add(signIntent(f, a, func(in *Intent) { in.Opinion, in.OpinionCID, in.State = vocab.Vanilla, "", IntentWithdrawn }))
	for _, n := range []int{0, 1, len(good) / 2, len(good) - 1} {
		f.Add(good[:n])
	}
	f.Add([]byte(`{"payload_type":"` + PayloadTypeIntent + `","payload":"` + base64.StdEncoding.EncodeToString([]byte(`{}`)) + `","signature":""}`))
	keys := NewKeyring(a.Entity)
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := VerifyIntent(b, keys, intentNow)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("error wraps neither ErrInvalid nor ErrUnknownKey: %v", err)
			}
			return
		}
		if err := in.check(intentNow, DefaultSkew); err != nil {
			t.Fatalf("accepted an intent that fails its checks: %v", err)
		}
		again, err := SignIntent(a, *in)
		if err != nil {
			t.Fatalf("accepted intent does not re-sign: %v", err)
		}
		in2, err := VerifyIntent(again, keys, intentNow)
		if err != nil || *in2 != *in {
			t.Fatalf("re-signed intent differs: %v", err)
		}
	})
}
