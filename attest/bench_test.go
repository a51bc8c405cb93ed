package attest

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Run with: go test ./attest -run '^$' -bench . -benchmem -cpu 1
// The store's hot path is "key in keyring": a verified ingest target of
// 5,000 claims/s on one core needs Verify well under 200 µs.

func BenchmarkSign(b *testing.B) {
	a, _ := testIdentities(b)
	s := testStatement()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(a, s); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "claims/s")
}

func BenchmarkVerify(b *testing.B) {
	a, _ := testIdentities(b)
	c := mustSign(b, a, nil)
	wire := mustWire(b, c)
	for _, bc := range []struct {
		name string
		in   []byte
		keys KeyLookup
	}{
		{"keyring", c.Raw, NewKeyring(a.Entity)},
		{"keyring_wire_with_key", wire, NewKeyring(a.Entity)},
		{"embedded_key", wire, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				if _, err := Verify(bc.in, bc.keys, VerifyOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, "claims/s")
		})
	}
}

// cpuClock returns the CPU time this process has used (user and
// system, all threads). On a shared machine, wall-clock ns/op counts
// time spent waiting for a core; cpu-ns/op does not.
func cpuClock() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopCPU runs f b.N times (b.Loop) and reports cpu-ns/op besides ns/op.
func loopCPU(b *testing.B, f func()) {
	b.ReportAllocs()
	start := cpuClock()
	for b.Loop() {
		f()
	}
	if b.N > 0 {
		b.ReportMetric(float64(cpuClock()-start)/float64(b.N), "cpu-ns/op")
	}
}

func reportRate(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// BenchmarkVerifyRaw is the baseline for BenchmarkVerify (issue 12:
// Verify should cost at most 1.3× this): ProtonMail/go-crypto's own
// detached verification of a payload of the same size with the same key,
// binary signature, no decoding around it.
func BenchmarkVerifyRaw(b *testing.B) {
	a, _ := testIdentities(b)
	c := mustSign(b, a, nil)
	payload := c.Envelope.Payload
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, a.Entity, bytes.NewReader(payload), pgpConfig()); err != nil {
		b.Fatal(err)
	}
	keys := openpgp.EntityList{a.Entity}
	b.ReportAllocs()
	b.SetBytes(int64(len(c.Raw)))
	for b.Loop() {
		if _, err := openpgp.CheckDetachedSignature(keys, bytes.NewReader(payload), bytes.NewReader(sig.Bytes()), nil); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "claims/s")
}

// Key parsing (issue 20): run with
//
//	go test ./attest -run '^$' -bench 'Parse|Refuse' -benchmem
//
// BenchmarkParseBaseline is the yardstick: one go-crypto signature
// verification (Ed25519, RSA-4096) and one parse of a builder key.
func BenchmarkParseBaseline(b *testing.B) {
	builder, _ := testIdentities(b)
	rsa4096, err := ParsePublicKey(readTestKey(b, "rsa4096.pgp"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		e    *openpgp.Entity
	}{{"ed25519_verify", builder.Entity}, {"rsa4096_verify", rsa4096}} {
		id := onlyIdentity(bc.e)
		b.Run(bc.name, func(b *testing.B) {
			loopCPU(b, func() {
				if err := bc.e.PrimaryKey.VerifyUserIdSignature(id.Name, bc.e.PrimaryKey, id.SelfSignature); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run("builder_key", func(b *testing.B) {
		pub := builder.PublicKey()
		loopCPU(b, func() {
			if _, err := ParsePublicKey(pub); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkParseCostliestAccepted parses the costliest keys the rules
// accept: RSA-4096 and RSA-3072 keys at the verification budget
// (MaxKeyVerifyCost: 4 RSA-4096 or 8 RSA-3072 verifications) and an
// Ed25519 key at every count bound (MaxKeyUserIDs, MaxKeySubkeys,
// MaxKeyVerifications, MaxKeySignatures) padded to 64 KiB, each with
// third-party certifications up to MaxKeySignatures. Target: at most
// 2 ms.
func BenchmarkParseCostliestAccepted(b *testing.B) {
	full := serializeKey(b, edAtBounds(b, 370))
	if len(full) > 64<<10 {
		b.Fatalf("%d bytes", len(full))
	}
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"rsa4096_at_budget", readTestKey(b, "rsa4096-costliest.pgp")},
		{"rsa3072_at_budget", readTestKey(b, "rsa3072-costliest.pgp")},
		{"ed25519_at_bounds_64KiB", full},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.in)))
			loopCPU(b, func() {
				if _, err := ParsePublicKey(bc.in); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkRefuseCostliestHostile refuses hostile keys of up to 64 KiB the
// first time they are seen (no refusal cache) and again
// (ParsePublicKey). Target: at most 1 ms. Keys the rules refuse cost no
// verification, every time; a key within the rules whose last signature
// is bad costs, the first time, what an accepted key costs, then a hash.
func BenchmarkRefuseCostliestHostile(b *testing.B) {
	maxSigs := serializeKey(b, certs(b, newKey(b, nil), MaxKeySignatures, 320))
	if len(maxSigs) > 64<<10 {
		b.Fatalf("max-signatures key: %d bytes", len(maxSigs))
	}
	// go-crypto verifies key revocations last: a bad second revocation
	// is refused after every other verification.
	lastBad := func(name string) []byte {
		k := bytes.Clone(readTestKey(b, name))
		rest, off := k, 0
		for i := 0; i < 3; i++ { // primary key, revocation, revocation
			p, r, err := nextRawPacket(rest)
			if err != nil {
				b.Fatal(err)
			}
			if i > 0 && (p.tag != tagSignature || p.body[1] != byte(packet.SigTypeKeyRevocation)) {
				b.Fatalf("%s: packet %d is not a key revocation", name, i)
			}
			off += len(p.all)
			rest = r
		}
		k[off-1] ^= 1 // the second revocation's signature value
		return k
	}
	for _, bc := range []struct {
		name string
		in   []byte
		rule bool // refused by the rules, before any verification
	}{
		{"brainpoolP512_139_selfsigs", brainpoolFlood(b), true},
		{"ed25519_64KiB_125_signatures", maxSigs, true},
		{"rsa4096_at_budget_last_verified_bad", lastBad("rsa4096-costliest.pgp"), false},
		{"rsa3072_at_budget_last_verified_bad", lastBad("rsa3072-costliest.pgp"), false},
	} {
		if _, err := ParsePublicKey(bc.in); err == nil || errors.Is(err, ErrKeyNotAllowed) != bc.rule {
			b.Fatalf("%s: %v", bc.name, err)
		}
		b.Run(bc.name+"/first", func(b *testing.B) {
			b.SetBytes(int64(len(bc.in)))
			loopCPU(b, func() {
				if _, err := parsePublicKey(bc.in, nil); err == nil {
					b.Fatal("accepted")
				}
			})
		})
		b.Run(bc.name+"/again", func(b *testing.B) {
			b.SetBytes(int64(len(bc.in)))
			loopCPU(b, func() {
				if _, err := ParsePublicKey(bc.in); err == nil {
					b.Fatal("accepted")
				}
			})
		})
	}
}
