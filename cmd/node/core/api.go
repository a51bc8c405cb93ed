// Package core is the node's one API: every read and write a user or the
// daemon performs, in the shape of kubo's coreiface. API is the
// interface; Node implements it in-process over the store (what the CLI
// uses when no daemon runs, and what the daemon serves); package
// core/rpc implements it over the daemon's unix socket; package
// core/coretest runs one test suite against both.
//
// Data flows one way: a build (builder.Result) becomes a signed claim
// (RecordBuild), claims are gossiped and stored (ImportClaims, the
// network), the store's claims become consensus (attest/consensus) and a
// verdict (Info, Verify).
package core

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/consensus"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/internal/human"
	"github.com/lebowski-dist/lebowski/store"
)

// API is what a node offers. Errors wrap ErrNotFound (nothing matched:
// exit 1 or 2 by command), ErrInvalid (bad input: exit 2), ErrOffline (the
// operation needs a running daemon), or describe an environment failure.
type API interface {
	// Info evaluates the recipes of a package.
	Info(ctx context.Context, q InfoQuery) (*InfoResult, error)
	// Verify gives the consensus verdict on a file hash.
	Verify(ctx context.Context, req VerifyRequest) (*VerifyResult, error)
	// Decide gives the whole install decision about one file (checks,
	// verdict, reasons, the red flag it warrants), from the consensus
	// and this node's own rebuild: the one decision every command renders.
	Decide(ctx context.Context, req DecideRequest) (*Decision, error)
	// Claims lists stored claims.
	Claims(ctx context.Context, q ClaimsQuery) ([]ClaimRow, error)
	// Claim returns one stored claim with its evidence: the signed bytes
	// and signature, the signer's key and trust, and how it arrived. id
	// is a full claim ID or a unique prefix (store.MinClaimPrefix+).
	Claim(ctx context.Context, id string) (*ClaimDetail, error)
	// InToto returns one of this node's own claims as an in-toto
	// Statement v1 (SLSA provenance v1) in a DSSE envelope signed with
	// the node's builder key.
	InToto(ctx context.Context, id string) (*attest.DSSEEnvelope, error)
	// ImportClaims verifies and stores wire envelopes.
	ImportClaims(ctx context.Context, wires [][]byte) ([]ImportResult, error)
	// RecordBuild signs a build with the node's key (buildinfo and log
	// CIDs included), keeps it as the node's own, ingests it once and
	// publishes it. The blobs it names must have been put first (Record
	// does both).
	RecordBuild(ctx context.Context, b BuildRecord) (*RecordResult, error)

	// ReportMismatch signs a red flag with the node's key: a file of a
	// recipe whose hash differs from what was expected (the consensus or
	// the node's own rebuild). It is stored and published like a claim and
	// never votes (docs/TRUST.md).
	ReportMismatch(ctx context.Context, m Mismatch) (*RecordResult, error)

	// Keys lists known builder keys with their effective trust.
	Keys(ctx context.Context) ([]KeyInfo, error)
	// Key returns one key with its public key material.
	Key(ctx context.Context, fingerprint string) (*KeyInfo, error)
	// ImportKey stores a public key (armored or binary) with a trust level.
	ImportKey(ctx context.Context, pub []byte, trust attest.Trust, source string) (*KeyInfo, error)
	// SetTrust changes how far the operator trusts a stored key.
	SetTrust(ctx context.Context, fingerprint string, trust attest.Trust, note string) error
	// CertifyKey certifies a stored builder key with the node's own key
	// (an OpenPGP certification, as `gpg --sign-key` makes), stores it and
	// publishes the certified key on the keys topic when online. A revoked
	// key is refused, except by the successor its rotation names (that
	// certification acknowledges the rotation).
	CertifyKey(ctx context.Context, fingerprint string) (*KeyResult, error)
	// RevokeKey revokes the node's own builder key (a key revocation
	// signature, naming a successor for a rotation), stores it and
	// publishes the revoked key when online. The node signs nothing with
	// a revoked key.
	RevokeKey(ctx context.Context, req RevokeRequest) (*KeyResult, error)
	// AnnounceKey publishes a stored key ("" = the node's own) on the
	// keys topic now (ErrOffline without a network).
	AnnounceKey(ctx context.Context, fingerprint string) (*KeyResult, error)

	// PutBlob keeps content-addressed bytes and returns their CID.
	PutBlob(ctx context.Context, data []byte) (string, error)
	// GetBlob returns the bytes of a blob held by this node.
	GetBlob(ctx context.Context, cid string) ([]byte, error)
	// FetchBlob returns a blob from this node or, when it has none, from a
	// peer (checked against the CID and kept).
	FetchBlob(ctx context.Context, cid string) ([]byte, error)
	// Opinion returns an opinion's bundle (opinions.WriteBundle keeps it):
	// by CID, or the opinion of that name the best-attested claims name.
	Opinion(ctx context.Context, q OpinionQuery) (*OpinionBundle, error)

	// Mirror adds "package[/opinion]" to the packages the node keeps and
	// serves in its apt repository (fetching the .debs of its SAFE
	// consensus from peers by hash) and reports what it serves for it.
	Mirror(ctx context.Context, ref string) (*MirrorResult, error)

	// Status describes the node.
	Status(ctx context.Context) (*Status, error)
	// Peers lists connected peers (ErrOffline without a network).
	Peers(ctx context.Context) ([]PeerInfo, error)
	// Subscribe follows (on) or stops following an opinion topic
	// "package/opinion" and returns the subscriptions.
	Subscribe(ctx context.Context, ref string, on bool) ([]string, error)
	// Events streams what happens on the node until ctx ends.
	Events(ctx context.Context) (<-chan Event, error)
}

// The verdict vocabulary the API answers in. attest/consensus computes
// it; the API names it so that its callers (the CLI, the status page,
// the repository) need no other package to read an answer.
type (
	Verdict      = consensus.Verdict
	Report       = consensus.Report
	Group        = consensus.Group
	BuilderClaim = consensus.BuilderClaim
	RedFlag      = consensus.RedFlag
)

// Verdicts.
const (
	Safe         = consensus.Safe
	DoNotInstall = consensus.DoNotInstall
	Unverified   = consensus.Unverified
)

// Sentinels.
var (
	// ErrNotFound: nothing in the store matched.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request is malformed (bad name, bad claim, bad
	// trust level).
	ErrInvalid = errors.New("invalid request")
	// ErrOffline: the operation needs a running lebowskid.
	ErrOffline = errors.New("needs a running lebowskid")
	// ErrNoIdentity: the node has no builder key.
	ErrNoIdentity = errors.New("no builder key")
)

// InputError marks bad input: it matches ErrInvalid and unwraps to its
// cause.
type InputError struct{ Err error }

func (e *InputError) Error() string   { return e.Err.Error() }
func (e *InputError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// Invalid wraps err as bad input.
func Invalid(err error) error { return &InputError{Err: err} }

// IsInvalid reports bad input from this package or the vocabulary.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalid) || errors.Is(err, vocab.ErrInvalid) }

// IsNotFound reports "nothing matched" from this package or the store.
func IsNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, store.ErrNotFound)
}

// InfoQuery selects the recipes of a package.
type InfoQuery struct {
	Package       string `json:"package"`
	DebianVersion string `json:"version,omitempty"` // "" = all
	// Opinion is a name, "vanilla" for unmodified builds, "" for all.
	Opinion string `json:"opinion,omitempty"`
	// OpinionCID, when set, keeps only recipes built from exactly this
	// opinion content.
	OpinionCID string `json:"opinion_cid,omitempty"`
	// All evaluates every recipe, not only the best-attested one.
	All bool `json:"all,omitempty"`
}

// RecipeInfo is the consensus view of one recipe.
type RecipeInfo struct {
	Recipe store.RecipeSummary `json:"recipe"`
	Report consensus.Report    `json:"report"`
	Bar    string              `json:"bar"`
	Own    bool                `json:"own_build"` // this node built it
	// Evidence is what the recipe's claims publish beside the hashes.
	Evidence RecipeEvidence `json:"evidence"`
	// Via is, for each certified builder in Report, the certification
	// path that makes it trusted here: [A, B] reads "trusted via A → B"
	// (A is a key this node trusts directly).
	Via map[string][]string `json:"via,omitempty"`
}

// RecipeEvidence lists the blobs a recipe's claims name, by kind.
type RecipeEvidence struct {
	Buildinfo []EvidenceBlob `json:"buildinfo,omitempty"`
	Logs      []EvidenceBlob `json:"logs,omitempty"`
	Locks     []EvidenceBlob `json:"locks,omitempty"`
}

// EvidenceBlob is one blob and how many builders' claims name it (each
// builder's node serves what it names).
type EvidenceBlob struct {
	CID      string `json:"cid"`
	Builders int    `json:"builders"`
	Held     bool   `json:"held"` // this node has it
}

// InfoResult answers Info.
type InfoResult struct {
	Package string       `json:"package"`
	Recipes []RecipeInfo `json:"recipes"`
}

// VerifyRequest asks for the verdict on one file. With Package empty it
// asks about a bare SHA256: which attested artifact has that hash, and
// its recipe's verdict (for files whose control data cannot be read).
type VerifyRequest struct {
	Package       string `json:"package"`        // source package
	BinaryPackage string `json:"binary_package"` // for messages
	DebianVersion string `json:"debian_version"`
	Opinion       string `json:"opinion"` // name; "" or "vanilla" = vanilla
	// OpinionCID, when set, restricts the verdict to recipes built from
	// exactly this opinion content: claims about a tampered opinion of the
	// same name never decide (docs/SECURITY.md).
	OpinionCID string `json:"opinion_cid,omitempty"`
	RecipeID   string `json:"recipe_id,omitempty"`
	FileName   string `json:"file_name"`
	SHA256     string `json:"sha256"`
}

// VerifyResult is the verdict and its evidence.
type VerifyResult struct {
	Verdict consensus.Verdict `json:"verdict"`
	Reasons []string          `json:"reasons"`
	Recipe  *RecipeInfo       `json:"recipe,omitempty"`
	// Expected is the consensus hash for the file name, if any.
	Expected string `json:"expected,omitempty"`
	// File is the attested artifact name, when the request gave only a
	// hash (Package empty).
	File string `json:"file,omitempty"`
}

// OpinionQuery names an opinion to fetch: by CID, or by package and name
// (the CID the best-attested recipe's claims name).
type OpinionQuery struct {
	Package string `json:"package,omitempty"`
	Name    string `json:"name,omitempty"`
	CID     string `json:"cid,omitempty"`
}

// OpinionBundle is an opinion as it travels (opinions.Opinion.Canonical).
type OpinionBundle struct {
	CID  string `json:"cid"`
	Data []byte `json:"data"`
	// Claims is how many stored claims name this opinion content (by name).
	Claims int `json:"claims"`
}

// ClaimsQuery selects claims to list.
type ClaimsQuery struct {
	Package string `json:"package,omitempty"` // "" = all packages
}

// ClaimRow is one claim in a listing.
type ClaimRow struct {
	store.StoredClaim
	Package string `json:"package"`
	Version string `json:"version"`
	Opinion string `json:"opinion,omitempty"`
}

// ImportResult is the outcome of importing one claim.
type ImportResult struct {
	ID     string `json:"id,omitempty"`
	Status string `json:"status"` // new, duplicate, equivocation, rejected
	Error  string `json:"error,omitempty"`
}

// BuildRecord is a finished build, as RecordBuild signs it. Blobs it names
// (buildinfo, log, and every artifact by the CID of its sha256) must be
// held by the node.
type BuildRecord struct {
	Recipe        attest.Recipe     `json:"recipe"`
	BinaryVersion string            `json:"binary_version"`
	Opinion       attest.OpinionRef `json:"opinion"` // zero for a vanilla build
	Status        attest.Result     `json:"status"`
	FailReason    string            `json:"fail_reason,omitempty"`
	Artifacts     []attest.Artifact `json:"artifacts"`
	BuildinfoCID  string            `json:"buildinfo_cid,omitempty"`
	LogCID        string            `json:"log_cid,omitempty"`
	LockCID       string            `json:"lock_cid,omitempty"` // the lock the build ran from
	// SecondArtifacts and DiffoscopeCID describe an unreproducible build:
	// the second build's hashes and the diffoscope report (a blob, put
	// first).
	SecondArtifacts []attest.Artifact `json:"second_artifacts,omitempty"`
	DiffoscopeCID   string            `json:"diffoscope_cid,omitempty"`
}

// Mismatch is what ReportMismatch signs.
type Mismatch struct {
	RecipeID string `json:"recipe_id"` // a recipe this node holds claims for
	File     string `json:"file"`      // artifact name
	Observed string `json:"observed"`  // sha256 of the file given
	Expected string `json:"expected"`  // sha256 expected
	Reason   string `json:"reason"`
}

// RecordResult is the claim RecordBuild signed.
type RecordResult struct {
	ID        string `json:"id"`
	Wire      []byte `json:"wire"` // the signed envelope, with the signer key
	Published bool   `json:"published"`
	// DiffoscopeCID is the report an unreproducible build's claim names.
	DiffoscopeCID string `json:"diffoscope_cid,omitempty"`
}

// ClaimDetail is a stored claim and the evidence to check it by hand:
// `gpg --verify signature.asc payload.json` with SignerKey imported.
type ClaimDetail struct {
	ID        string            `json:"id"`
	Statement *attest.Statement `json:"statement"`
	// Payload is the signed statement bytes; Signature the armored
	// detached OpenPGP signature over exactly them.
	Payload   []byte `json:"payload"`
	Signature string `json:"signature"`
	// Wire is the envelope with the signer key, as `claims import` reads it.
	Wire      []byte  `json:"wire"`
	Signer    KeyInfo `json:"signer"`
	SignerKey string  `json:"signer_key"` // armored public key
	// Origin is how the claim reached this node (nil: stored before
	// origins were recorded).
	Origin *store.Origin `json:"origin,omitempty"`
	// Evidence lists which of the blobs the claim names this node holds.
	Evidence []Evidence `json:"evidence,omitempty"`
}

// Evidence is one blob a claim names (buildinfo, build log, lock).
type Evidence struct {
	Kind string `json:"kind"`
	CID  string `json:"cid"`
	Held bool   `json:"held"` // this node has it (peers may too)
}

// MirrorResult says what the node's repository serves for one ref.
type MirrorResult struct {
	Ref      string        `json:"ref"`
	Packages []RepoPackage `json:"packages"`
	// Reason says why some or all of the recipe's .debs are not served
	// (yet): no trusted consensus, not SAFE, not fetched.
	Reason string `json:"reason,omitempty"`
	// URL is the repository's address ("" when it is off).
	URL string `json:"url,omitempty"`
}

// RepoPackage is one .deb the repository serves.
type RepoPackage struct {
	Name     string `json:"name"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	RecipeID string `json:"recipe_id"`
}

// KeyInfo is a builder key with the node's effective trust.
type KeyInfo struct {
	Fingerprint string `json:"fingerprint"`
	// Trust is the effective level: the operator's choice, the config's
	// trusted_keys, the node's own key, or "certified" through
	// certifications within trust_hops.
	Trust attest.Trust `json:"trust"`
	// Stored is the level kept in the store (what `key trust` sets).
	Stored attest.Trust `json:"stored_trust"`
	// Via is the certification path from a trusted key, for certified keys.
	Via []string `json:"via,omitempty"`
	// Revocation is the key's own revocation signature, when it has one:
	// the key is distrusted (its claims do not count).
	Revocation *attest.Revocation `json:"revocation,omitempty"`
	// RotatedTo is the successor the revocation names, when that key
	// votes here: the revoked key's claims signed before the revocation
	// count as the successor's (docs/TRUST.md).
	RotatedTo    string    `json:"rotated_to,omitempty"`
	Source       string    `json:"source"`
	FirstSeen    time.Time `json:"first_seen"`
	Equivocating bool      `json:"equivocating"`
	Note         string    `json:"note,omitempty"`
	// PublicKey is the binary transferable public key (Key only).
	PublicKey []byte `json:"public_key,omitempty"`
}

// KeyResult is a key after CertifyKey, RevokeKey or AnnounceKey.
type KeyResult struct {
	KeyInfo
	// Published: the key was announced on the keys topic (false without
	// a running daemon: it is stored, and the daemon announces the own
	// key when it starts; `key announce` publishes any key later).
	Published bool `json:"published"`
}

// RevokeRequest asks RevokeKey to revoke the node's own key.
type RevokeRequest struct {
	// Successor, for a rotation, is the fingerprint of the key that
	// replaces this one.
	Successor string `json:"successor,omitempty"`
	// Reason is free text kept in the revocation (one line).
	Reason string `json:"reason,omitempty"`
	// Compromised marks a stolen or leaked key: none of its signatures
	// count, whenever made; it names no successor.
	Compromised bool `json:"compromised,omitempty"`
}

// PeerInfo is one connected peer.
type PeerInfo struct {
	ID        string    `json:"id"`
	Addrs     []string  `json:"addrs"`
	Topics    []string  `json:"topics,omitempty"`
	Score     float64   `json:"score"`
	Connected time.Time `json:"connected,omitempty"`
}

// Status describes the node.
type Status struct {
	Online        bool     `json:"online"` // a daemon with a network
	PeerID        string   `json:"peer_id,omitempty"`
	Builder       string   `json:"builder,omitempty"`
	Addrs         []string `json:"addrs,omitempty"`
	Subscriptions []string `json:"subscriptions"`
	Peers         int      `json:"peers"`
	Claims        int      `json:"claims"`
	QueuedBuilds  int      `json:"queued_builds"`
	RunningBuilds []string `json:"running_builds"` // recipe keys (package/opinion CID)
	// Builds are the rebuilds running here, with the tail of their log;
	// Intents the rebuilds other trusted builders announced that this node
	// counts toward each recipe's target (docs/SCHEDULER.md).
	Builds  []RunningBuild `json:"builds"`
	Intents []BuildIntent  `json:"intents"`
	Started time.Time      `json:"started,omitempty"`
	Version string         `json:"version"`
}

// RunningBuild is one rebuild running on this node.
type RunningBuild struct {
	Recipe  string    `json:"recipe"` // package/opinion CID, or package/vanilla
	Package string    `json:"package"`
	Opinion string    `json:"opinion"`
	Started time.Time `json:"started"`
	Reason  string    `json:"reason,omitempty"`
	// LogTail is the end of the build log so far (at most MaxLogTail
	// lines, each cut to MaxLogLine characters).
	LogTail []string `json:"log_tail"`
}

// Bounds of RunningBuild.LogTail.
const (
	MaxLogTail = 40
	MaxLogLine = 400
)

// LogLine is one line of a running build's log within the bounds of
// RunningBuild.LogTail: valid UTF-8, at most MaxLogLine characters.
func LogLine(l string) string {
	return human.Short(strings.ToValidUTF8(l, "\uFFFD"), MaxLogLine)
}

// BuildIntent is a rebuild another builder announced (signed, on the
// intents topic).
type BuildIntent struct {
	Recipe  string    `json:"recipe"`
	Builder string    `json:"builder"`
	Started time.Time `json:"started"`
	Expires time.Time `json:"expires"` // counted until then unless renewed
	Expect  int64     `json:"expect_seconds,omitempty"`
}

// Event types.
const (
	EventClaim         = "claim"          // a claim was stored (own or a peer's)
	EventBuildStarted  = "build-started"  // the daemon started a rebuild
	EventBuildFinished = "build-finished" // a rebuild finished (Data: status, artifacts)
	// EventKey: a builder key changed here — imported, its trust set,
	// certified, revoked, or learned or updated from the network (Key;
	// Data: {"change": what, "trust": the level it has now}).
	EventKey = "key"
)

// Event is one item of the node's event stream.
type Event struct {
	Time    time.Time       `json:"time"`
	Type    string          `json:"type"`
	Package string          `json:"package,omitempty"`
	Opinion string          `json:"opinion,omitempty"`
	ClaimID string          `json:"claim_id,omitempty"`
	Key     string          `json:"key,omitempty"`  // fingerprint (EventKey)
	From    string          `json:"from,omitempty"` // peer ID, "self" for own claims, "import" for imports
	Data    json.RawMessage `json:"data,omitempty"`
}
