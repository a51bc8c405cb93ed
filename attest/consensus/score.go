package consensus

import (
	"math"
	"time"

	"github.com/lebowski-dist/lebowski/attest/vocab"
)

// Score constants. docs/TRUST.md explains each one; change them together
// with that document and the table tests in score_test.go.
const (
	// WeightVolume and WeightDiversity split the base score (they sum to 1).
	WeightVolume    = 0.5
	WeightDiversity = 0.5
	// VolumeSaturation is the number of agreeing trusted builders that
	// gives full volume: 1 → 0.29 (low), 5 → 0.75 (medium), 10+ → 1 (high).
	VolumeSaturation = 10
	// DiversitySaturation is the number of distinct operators that gives
	// full diversity. One operator gives 0, so a single operator can never
	// score above 10×WeightVolume = 5, whatever number of keys it runs.
	// An operator is what TrustSource.Operator groups: for the node, a
	// certification cluster (a directly trusted key and every key certified
	// from it), not a peer ID (docs/TRUST.md, "Operator diversity").
	DiversitySaturation = 5
	// Recency: full until RecencyGrace, then linear down to RecencyFloor
	// at RecencyHorizon, and RecencyFloor after that.
	RecencyGrace   = 7 * 24 * time.Hour
	RecencyHorizon = 90 * 24 * time.Hour
	RecencyFloor   = 0.75
	// Purity multipliers. Vanilla Debian builds (no opinion) count as pure;
	// an undeclared purity counts as patches.
	PurityFactorPure      = 1.0
	PurityFactorConfigure = 0.9
	PurityFactorPatches   = 0.75
	// FailurePenalty is the most that trusted "failed" claims take off:
	// factor = 1 − FailurePenalty × failed/(agreeing+failed).
	FailurePenalty = 0.3
	// DissentCap is the highest score a recipe can have while any trusted
	// key dissents (another hash, or a signed "unreproducible").
	DissentCap = 3.0
	// DefaultThreshold is the SAFE threshold when Options.Threshold is 0.
	DefaultThreshold = 6.0
	// DefaultMinTrusted is Options.MinTrusted when it is 0.
	DefaultMinTrusted = 2
)

// Components are the factors that make up a Report's score.
type Components struct {
	TrustedAgree int           `json:"trusted_agree"` // n: trusted keys in the consensus group
	Operators    int           `json:"operators"`     // d: distinct operators among them (TrustSource.Operator)
	TrustedFail  int           `json:"trusted_failed"`
	Dissent      int           `json:"trusted_dissent"`
	Age          time.Duration `json:"age_ns"`    // age of the newest agreeing trusted claim (negative = future, counted as fresh)
	AgeKnown     bool          `json:"age_known"` // false when Options.Now is zero or there is no consensus
	Volume       float64       `json:"volume"`    // V(n) in [0,1]
	Diversity    float64       `json:"diversity"` // Div(d) in [0,1]
	Recency      float64       `json:"recency"`   // R(age) in [RecencyFloor,1]
	Purity       float64       `json:"purity"`    // P in {0.75,0.9,1}
	Failures     float64       `json:"failures"`  // F in [1−FailurePenalty,1]
	Raw          float64       `json:"raw"`       // 10×(wV·V+wD·Div)×R×P×F before the cap
	Capped       bool          `json:"capped"`    // DissentCap in force (some trusted key dissents)
}

// volume is V(n) = min(1, ln(1+n)/ln(1+VolumeSaturation)).
func volume(n int) float64 {
	if n <= 0 {
		return 0
	}
	return math.Min(1, math.Log1p(float64(n))/math.Log1p(VolumeSaturation))
}

// diversity is Div(d) = min(1, ln(d)/ln(DiversitySaturation)); Div(1) = 0.
func diversity(d int) float64 {
	if d <= 1 {
		return 0
	}
	return math.Min(1, math.Log(float64(d))/math.Log(DiversitySaturation))
}

// recency is R(age); an unknown age counts at the floor (conservative).
func recency(age time.Duration, known bool) float64 {
	switch {
	case !known:
		return RecencyFloor
	case age <= RecencyGrace:
		return 1
	case age >= RecencyHorizon:
		return RecencyFloor
	}
	f := float64(age-RecencyGrace) / float64(RecencyHorizon-RecencyGrace)
	return 1 - f*(1-RecencyFloor)
}

// purityFactor is P. vanilla means a build without an opinion.
func purityFactor(p vocab.Purity, vanilla bool) float64 {
	switch {
	case vanilla || p == vocab.PurityPureCompilation:
		return PurityFactorPure
	case p == vocab.PurityConfigureOnly:
		return PurityFactorConfigure
	}
	return PurityFactorPatches
}

// failures is F = 1 − FailurePenalty·f/(n+f).
func failures(n, f int) float64 {
	if f <= 0 || n+f <= 0 {
		return 1
	}
	return 1 - FailurePenalty*float64(f)/float64(n+f)
}

// computeScore fills the factor fields of c from its counts (only when
// there is a consensus) and returns the final score: 0 without a consensus, the raw product capped at
// DissentCap when any trusted key dissents, rounded to one decimal.
func computeScore(c *Components, consensus bool, purity vocab.Purity, vanilla bool) float64 {
	if !consensus {
		return 0 // factors stay zero: there is nothing to weigh
	}
	c.Volume = volume(c.TrustedAgree)
	c.Diversity = diversity(c.Operators)
	c.Recency = recency(c.Age, c.AgeKnown)
	c.Purity = purityFactor(purity, vanilla)
	c.Failures = failures(c.TrustedAgree, c.TrustedFail)
	c.Raw = 10 * (WeightVolume*c.Volume + WeightDiversity*c.Diversity) * c.Recency * c.Purity * c.Failures
	s := c.Raw
	c.Capped = c.Dissent > 0
	if c.Capped && s > DissentCap {
		s = DissentCap
	}
	s = math.Max(0, math.Min(10, s))
	return math.Round(s*10) / 10
}
