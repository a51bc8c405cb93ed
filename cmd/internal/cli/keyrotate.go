package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/cmd/node/config"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// rotation is what `key rotate --json` prints.
type rotation struct {
	Old        string             `json:"old"`
	New        string             `json:"new"`
	Revocation *attest.Revocation `json:"revocation"`
	// Path is the new builder.key; Retired is where the revoked private
	// key is kept.
	Path    string `json:"path"`
	Retired string `json:"retired"`
	// Resumed: an earlier rotation was cut short and this one finished it.
	Resumed bool `json:"resumed"`
}

func newKeyRotateCmd(g *globals) *cobra.Command {
	var reason, name string
	cmd := &cobra.Command{
		Use:   "rotate [--reason TEXT] [--name NAME]",
		Short: "Replace this node's builder key by a new one, revoking the old one as superseded (stop lebowskid first)",
		Long: `Replace this node's builder key in one step: generate a new key, revoke the
current one naming the new one as its successor (a rotation, docs/TRUST.md),
install the new key as builder.key and keep the revoked private key beside
it (builder.key.<FINGERPRINT>.revoked). Nodes that trust or certify the new
key count the old key's earlier claims as the new key's: ask the operators
who trusted or certified the old key to certify the new one
(lebowski key certify NEW).

Needs lebowskid stopped (it signs with the key it loaded); when it starts
again it announces the new key and the old key's revocation. A rotation cut
short (builder.key.next left behind) is finished by running it again.
Rotations chain: after a second one, the first key's claims count as the
newest key's. A stolen key is not rotated: use lebowski key revoke
--compromised.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			// The data dir's own socket, whatever --socket says: the
			// daemon that signs with this builder.key answers there.
			if c, err := net.DialTimeout("unix", cfg.Socket(), time.Second); err == nil {
				c.Close()
				return envErr(errors.New("lebowskid is running with this data dir and signs with the current key: stop it first (sudo systemctl stop lebowskid), rotate, then start it again (it announces the new key and the revocation)"))
			}
			l := cfg.Layout()
			r, err := g.rotate(cmd.Context(), l, name, reason)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(r)
			}
			if r.Resumed {
				g.printf("finished the rotation left unfinished in %s\n", l.Dir)
			}
			g.printf("revoked %s (superseded by %s)\nnew builder key %s\n  private key: %s (0600)\n  the revoked key: %s\n",
				r.Old, r.New, r.New, r.Path, r.Retired)
			fmt.Fprintf(g.errOut, "next: start lebowskid (it announces the new key and the revocation); operators who trusted or certified %s should run `lebowski key certify %s`, so that its earlier claims count as the new key's\n", short(r.Old, 8), r.New)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "one line kept in the revocation")
	cmd.Flags().StringVar(&name, "name", "", "user ID name on the new key (default: the old key's)")
	return cmd
}

// rotate carries out a rotation in steps that a re-run resumes (the new
// key waits in builder.key.next until the very end, so its presence
// means "unfinished"):
//
//  1. generate S into builder.key.next (synced);
//  2. revoke K naming S (stored, synced by the store);
//  3. keep K as builder.key.<K>.revoked (a hard link);
//  4. install S: builder.key becomes a link to builder.key.next;
//  5. store S as the node's own key, and S certifies K (the successor's
//     acknowledgement of the rotation);
//  6. remove builder.key.next.
//
// The store stays locked from step 2 to step 4, so a daemon cannot start
// with K in between. A re-run after step 4 (builder.key and
// builder.key.next are the same key) does steps 5–6 only.
func (g *globals) rotate(ctx context.Context, l config.Layout, name, reason string) (*rotation, error) {
	cur, err := attest.LoadIdentity(l.BuilderKey())
	if errors.Is(err, os.ErrNotExist) {
		return nil, envErr(fmt.Errorf("no builder key at %s to rotate: run `lebowski key gen`", l.BuilderKey()))
	}
	if err != nil {
		return nil, envErr(err)
	}
	next, err := attest.LoadIdentity(l.NextBuilderKey())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, envErr(fmt.Errorf("%w (left by an unfinished rotation: remove it to start over)", err))
	}
	r := &rotation{Path: l.BuilderKey(), Resumed: next != nil}
	if next != nil && next.Fingerprint() == cur.Fingerprint() {
		r.New = cur.Fingerprint() // installed already: steps 5–6
	} else {
		// The reason is checked as the revocation will be made, before
		// anything is generated.
		if _, err := attest.Revoke(cur, strings.Repeat("A", 40), reason, false, time.Now()); err != nil {
			return nil, usageErr("--reason: %v", err)
		}
		r.Old, r.Retired = cur.Fingerprint(), l.RetiredBuilderKey(cur.Fingerprint())
		if err := g.revokeAndInstall(ctx, l, r, cur, next, name, reason); err != nil {
			return nil, err
		}
	}
	n, done, err := g.local(withKey) // now with the new key
	if err != nil {
		return nil, err
	}
	defer done()
	if err := n.EnsureOwnKey(); err != nil {
		return nil, envErr(err)
	}
	if r.Old == "" { // resumed after step 4: the key it replaced
		r.Old, r.Revocation = replacedBy(ctx, n, l, r.New)
		r.Retired = l.RetiredBuilderKey(r.Old)
	}
	if err := acknowledge(ctx, n, r.Old, r.New); err != nil {
		return nil, err
	}
	if err := os.Remove(l.NextBuilderKey()); err != nil {
		return nil, envErr(fmt.Errorf("finish the rotation: %w", err))
	}
	if err := syncDir(l.Dir); err != nil {
		return nil, envErr(err)
	}
	return r, nil
}

// revokeAndInstall is steps 1–4 of rotate, with the store locked.
func (g *globals) revokeAndInstall(ctx context.Context, l config.Layout, r *rotation, cur, next *attest.Identity, name, reason string) error {
	n, done, err := g.local(withKey)
	if err != nil {
		return err
	}
	defer done()
	ki, err := n.Key(ctx, r.Old)
	if err != nil && !core.IsNotFound(err) {
		return err
	}
	switch {
	case err == nil && ki.Revocation != nil && next != nil && ki.Revocation.Successor == next.Fingerprint():
		r.Revocation = ki.Revocation // revoked before the rotation was cut short
	case err == nil && ki.Revocation != nil:
		return envErr(fmt.Errorf("key %s is already revoked (%s, %s) and names no successor waiting in %s: generate a new key with `lebowski key gen --force` instead",
			r.Old, ki.Revocation.Time.Format("2006-01-02"), ki.Revocation.Reason, l.NextBuilderKey()))
	default:
		if next == nil {
			if next, err = generateNext(l, cur, name); err != nil {
				return envErr(err)
			}
		}
		res, err := n.RevokeKey(ctx, core.RevokeRequest{Successor: next.Fingerprint(), Reason: reason})
		if core.IsInvalid(err) {
			return usageErr("%v", err)
		}
		if err != nil {
			return err
		}
		r.Revocation = res.Revocation
	}
	r.New = next.Fingerprint()
	// Keep K, then make builder.key the new key: a link to
	// builder.key.next renamed over it, so that both name S until step 6.
	if err := os.Link(l.BuilderKey(), r.Retired); err != nil && !sameFile(l.BuilderKey(), r.Retired) {
		return envErr(fmt.Errorf("keep the revoked key: %w (move %s away and run `lebowski key rotate` again)", err, r.Retired))
	}
	if err := syncDir(l.Dir); err != nil {
		return envErr(err)
	}
	if err := ownedLike(l.NextBuilderKey(), l.BuilderKey()); err != nil { // also a next key left by an earlier run
		return envErr(err)
	}
	tmp := l.NextBuilderKey() + ".install"
	_ = os.Remove(tmp)
	if err := os.Link(l.NextBuilderKey(), tmp); err != nil {
		return envErr(fmt.Errorf("install the new key: %w", err))
	}
	if err := os.Rename(tmp, l.BuilderKey()); err != nil {
		return envErr(fmt.Errorf("install the new key: %w", err))
	}
	if err := syncDir(l.Dir); err != nil {
		return envErr(err)
	}
	return nil
}

// generateNext is step 1: a new key named like cur (or name) in
// builder.key.next, its directory entry synced before the revocation
// names it (step 4 gives it builder.key's owner).
func generateNext(l config.Layout, cur *attest.Identity, name string) (*attest.Identity, error) {
	if name == "" {
		name = "Lebowski builder"
		if pi := cur.Entity.PrimaryIdentity(); pi != nil && pi.UserId != nil && pi.UserId.Name != "" {
			name = pi.UserId.Name
		}
	}
	next, err := attest.GenerateIdentity(name, "")
	if err != nil {
		return nil, err
	}
	if err := next.Save(l.NextBuilderKey(), false); err != nil {
		return nil, err
	}
	return next, syncDir(l.Dir)
}

// acknowledge is step 5's second half: the new key certifies the one it
// replaces, the successor's acknowledgement without which no node counts
// the rotation (docs/TRUST.md, "Rotation"). Done once: a re-run finds the
// rotation counted already.
func acknowledge(ctx context.Context, n *core.Node, old, next string) error {
	if old == "" {
		return nil // no revoked key in the data dir names the new one
	}
	if ki, err := n.Key(ctx, old); err == nil && ki.RotatedTo == next {
		return nil
	}
	if _, err := n.CertifyKey(ctx, old); err != nil {
		return envErr(fmt.Errorf("certify the replaced key %s with the new key (the rotation's acknowledgement): %w; run `lebowski key rotate` again", old, err))
	}
	return nil
}

// replacedBy finds, among the revoked keys kept in the data dir, the one
// whose stored revocation names s ("" when there is none).
func replacedBy(ctx context.Context, n *core.Node, l config.Layout, s string) (string, *attest.Revocation) {
	kept, _ := filepath.Glob(l.RetiredBuilderKey("*"))
	for _, p := range kept {
		fpr := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "builder.key."), ".revoked")
		if ki, err := n.Key(ctx, fpr); err == nil && ki.Revocation != nil && ki.Revocation.Successor == s {
			return fpr, ki.Revocation
		}
	}
	return "", nil
}

// ownedLike gives path the owner of like: a node that runs as another
// user (root rotating it) must still read its new key.
func ownedLike(path, like string) error {
	fi, err := os.Stat(like)
	if err != nil {
		return err
	}
	return chownLike(path, fi)
}

// chownLike gives path the owner of the file like describes, when that
// is not the user running this.
func chownLike(path string, like os.FileInfo) error {
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok || (int(st.Uid) == os.Getuid() && int(st.Gid) == os.Getgid()) {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("give %s the owner %d:%d of the key it replaces: %w (run as that user or root)", path, st.Uid, st.Gid, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// sameFile: a and b are the same file (a rotation cut short after keeping
// the revoked key).
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
