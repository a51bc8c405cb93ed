package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/cmd/internal/config"
	"github.com/lebowski-dist/lebowski/cmd/internal/core"
	"github.com/lebowski-dist/lebowski/store"
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
A stolen key is not rotated: use lebowski key revoke --compromised.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.ContainsAny(reason, "\r\n") {
				return usageErr("--reason: the reason text must be one line")
			}
			if c, err := g.dial(cmd.Context()); err != nil {
				return err
			} else if c != nil {
				return envErr(errors.New("lebowskid is running with this data dir and signs with the current key: stop it first (sudo systemctl stop lebowskid), rotate, then start it again (it announces the new key and the revocation)"))
			}
			l, err := g.layout()
			if err != nil {
				return err
			}
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

// rotate carries out a rotation in steps that can be resumed: the new key
// is written to builder.key.next first, then the old key is revoked
// naming it, then the files are swapped. Running it again after any step
// finishes the rotation with the same new key.
func (g *globals) rotate(ctx context.Context, l config.Layout, name, reason string) (*rotation, error) {
	old, err := attest.LoadIdentity(l.BuilderKey())
	if errors.Is(err, os.ErrNotExist) {
		return nil, envErr(fmt.Errorf("no builder key at %s to rotate: run `lebowski key gen`", l.BuilderKey()))
	}
	if err != nil {
		return nil, envErr(err)
	}
	r := &rotation{Old: old.Fingerprint(), Path: l.BuilderKey(), Retired: l.RetiredBuilderKey(old.Fingerprint())}
	next, err := attest.LoadIdentity(l.NextBuilderKey())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, envErr(fmt.Errorf("%w (left by an unfinished rotation: remove it to start over)", err))
	}
	r.Resumed = err == nil
	if err := g.revokeForRotation(ctx, l, r, old, next, name, reason); err != nil {
		return nil, err
	}

	// Keep the revoked private key, then install the new one. A rename
	// within the data dir is atomic; the directory is synced after both.
	if err := os.Link(l.BuilderKey(), r.Retired); err != nil && !sameFile(l.BuilderKey(), r.Retired) {
		return nil, envErr(fmt.Errorf("keep the revoked key: %w (move %s away and run `lebowski key rotate` again)", err, r.Retired))
	}
	if err := os.Rename(l.NextBuilderKey(), l.BuilderKey()); err != nil {
		return nil, envErr(fmt.Errorf("install the new key: %w", err))
	}
	if err := syncDir(filepath.Dir(l.BuilderKey())); err != nil {
		return nil, envErr(err)
	}
	n, done, err := g.local(withKey) // now with the new key
	if err != nil {
		return nil, err
	}
	defer done()
	if err := n.EnsureOwnKey(); err != nil {
		return nil, envErr(err)
	}
	return r, nil
}

// revokeForRotation revokes the old key naming the next one, which it
// generates into builder.key.next unless an unfinished rotation left one
// (next != nil). A revocation naming next already stored (a rotation cut
// short after it) is kept; a key revoked otherwise is refused before any
// key is generated.
func (g *globals) revokeForRotation(ctx context.Context, l config.Layout, r *rotation, old, next *attest.Identity, name, reason string) error {
	n, done, err := g.local(withKey)
	if err != nil {
		return err
	}
	defer done()
	ki, err := n.Key(ctx, r.Old)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil && ki.Revocation != nil {
		if next != nil && ki.Revocation.Successor == next.Fingerprint() {
			r.New, r.Revocation = next.Fingerprint(), ki.Revocation
			return nil
		}
		return envErr(fmt.Errorf("key %s is already revoked (%s, %s) and names no successor waiting in %s: generate a new key with `lebowski key gen --force` instead",
			r.Old, ki.Revocation.Time.Format("2006-01-02"), ki.Revocation.Reason, l.NextBuilderKey()))
	}
	if next == nil {
		if name == "" {
			name = "Lebowski builder"
			if pi := old.Entity.PrimaryIdentity(); pi != nil && pi.UserId != nil && pi.UserId.Name != "" {
				name = pi.UserId.Name
			}
		}
		if next, err = attest.GenerateIdentity(name, ""); err != nil {
			return envErr(err)
		}
		if err := next.Save(l.NextBuilderKey(), false); err != nil {
			return envErr(err)
		}
		if err := ownedLike(l.NextBuilderKey(), l.BuilderKey()); err != nil {
			return envErr(err)
		}
	}
	r.New = next.Fingerprint()
	res, err := n.RevokeKey(ctx, core.RevokeRequest{Successor: r.New, Reason: reason})
	if core.IsInvalid(err) {
		return usageErr("%v", err)
	}
	if err != nil {
		return err
	}
	r.Revocation = res.Revocation
	return nil
}

// ownedLike gives path the owner of like: a node that runs as another
// user (root rotating it) must still read its new key.
func ownedLike(path, like string) error {
	fi, err := os.Stat(like)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (int(st.Uid) == os.Getuid() && int(st.Gid) == os.Getgid()) {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("give %s the owner of %s (%d:%d): %w (run as that user or root)", path, like, st.Uid, st.Gid, err)
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
