package cli

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage builder keys (OpenPGP) and whom you trust"}
	var name string
	var force bool
	gen := &cobra.Command{
		Use:   "gen",
		Short: "Generate this node's builder key (Ed25519) into the data dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.layout()
			if err != nil {
				return err
			}
			if err := l.Ensure(); err != nil {
				return envErr(err)
			}
			if _, err := os.Stat(l.BuilderKey()); err == nil && !force {
				id, err := attest.LoadIdentity(l.BuilderKey())
				if err != nil {
					return envErr(err)
				}
				return g.reportKey(id, false)
			}
			id, err := attest.GenerateIdentity(name, "")
			if err != nil {
				return envErr(err)
			}
			old, _ := os.Stat(l.BuilderKey())
			if err := id.Save(l.BuilderKey(), force); err != nil {
				return envErr(err)
			}
			if old != nil { // --force: the node may run as the old key's owner
				if err := chownLike(l.BuilderKey(), old); err != nil {
					return envErr(err)
				}
			}
			if c, err := g.dial(cmd.Context()); c != nil {
				fmt.Fprintf(g.errOut, "lebowskid runs with this data dir: restart it to sign with the new key\n")
			} else if err != nil {
				return err
			} else {
				n, done, err := g.local(withKey)
				if err != nil {
					return err
				}
				defer done()
				if err := n.EnsureOwnKey(); err != nil {
					return envErr(err)
				}
			}
			return g.reportKey(id, true)
		},
	}
	gen.Flags().StringVar(&name, "name", "Lebowski builder", "user ID name on the key")
	gen.Flags().BoolVar(&force, "force", false, "replace an existing key (its claims stay signed by the old one)")

	export := &cobra.Command{
		Use:   "export [FINGERPRINT]",
		Short: "Print a builder's armored public key: this node's (give it to people who may trust you) or any stored one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var fpr, arm string
			if len(args) == 0 {
				l, err := g.layout()
				if err != nil {
					return err
				}
				id, _, err := core.LoadIdentity(l, false, "")
				if err != nil {
					return envErr(err)
				}
				if arm, err = id.ArmoredPublicKey(); err != nil {
					return err
				}
				fpr = id.Fingerprint()
			} else {
				k, err := ask(cmd.Context(), g, func(api core.API) (*core.KeyInfo, error) { return api.Key(cmd.Context(), args[0]) })
				if err != nil {
					return notFoundIsUsage(err, "list known keys with `lebowski key list`")
				}
				e, err := attest.ParsePublicKey(k.PublicKey)
				if err != nil {
					return envErr(fmt.Errorf("stored key %s: %w", k.Fingerprint, err))
				}
				if arm, err = attest.ArmorPublicKey(e); err != nil {
					return err
				}
				fpr = k.Fingerprint
			}
			if g.json {
				return g.printJSON(map[string]string{"fingerprint": fpr, "public_key": arm})
			}
			fmt.Fprint(g.out, arm)
			return nil
		},
	}

	var importTrust string
	imp := &cobra.Command{
		Use:   "import FILE...",
		Short: "Import public keys (armored or binary; - for stdin)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := attest.ParseOperatorTrust(importTrust)
			if err != nil {
				return usageErr("--trust: %v", err)
			}
			var keys [][]byte
			for _, f := range args {
				data, err := readFileOrStdin(f)
				if err != nil {
					return usageErr("%v", err)
				}
				if _, err := attest.ParsePublicKey(data); err != nil {
					return usageErr("%s: %v", f, err)
				}
				keys = append(keys, data)
			}
			b, done, err := g.api(cmd.Context(), write)
			if err != nil {
				return err
			}
			defer done()
			var infos []core.KeyInfo
			for i, data := range keys {
				ki, err := b.ImportKey(cmd.Context(), data, t, "import "+args[i])
				if err != nil {
					return err
				}
				infos = append(infos, *ki)
			}
			if g.json {
				return g.printJSON(infos)
			}
			for _, ki := range infos {
				g.printf("imported %s (%s)\n", ki.Fingerprint, ki.Trust)
			}
			return nil
		},
	}
	imp.Flags().StringVar(&importTrust, "trust", "unvetted", "trust level: unvetted, trusted or distrusted")

	var note string
	trust := &cobra.Command{
		Use:   "trust FINGERPRINT [trusted|unvetted|distrusted]",
		Short: "Set how far you trust a builder key (default: trusted)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			level := attest.TrustTrusted
			if len(args) == 2 {
				var err error
				if level, err = attest.ParseOperatorTrust(args[1]); err != nil {
					return usageErr("%v", err)
				}
			}
			fpr := vocab.NormalizeFingerprint(args[0])
			if err := vocab.CheckFingerprint(fpr); err != nil {
				return usageErr("%v", err)
			}
			b, done, err := g.api(cmd.Context(), write)
			if err != nil {
				return err
			}
			defer done()
			if err := b.SetTrust(cmd.Context(), fpr, level, note); err != nil {
				return notFoundIsUsage(err, "import the key first with `lebowski key import`")
			}
			if g.json {
				return g.printJSON(map[string]string{"fingerprint": fpr, "trust": string(level)})
			}
			g.printf("%s is now %s\n", fpr, level)
			return nil
		},
	}
	trust.Flags().StringVar(&note, "note", "", "a note kept with the key (who runs it)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List known builder keys and their trust",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := ask(cmd.Context(), g, func(b core.API) ([]core.KeyInfo, error) { return b.Keys(cmd.Context()) })
			if err != nil {
				return err
			}
			if g.json {
				if keys == nil {
					keys = []core.KeyInfo{}
				}
				return g.printJSON(keys)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FINGERPRINT\tTRUST\tEQUIVOCATING\tFIRST SEEN\tSOURCE")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", k.Fingerprint, trustWords(k), k.Equivocating, k.FirstSeen.Format("2006-01-02 15:04"), k.Source)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(gen, export, imp, trust, list, newKeyCertifyCmd(g), newKeyRevokeCmd(g), newKeyRotateCmd(g), newKeyAnnounceCmd(g))
	return cmd
}

// trustWords is a key's effective trust as `key list` shows it.
func trustWords(k core.KeyInfo) string {
	trust := string(k.Trust)
	if len(k.Via) > 0 {
		trust += " via " + strings.Join(shortAll(k.Via, 8), " → ")
	}
	if r := k.Revocation; r != nil {
		trust += fmt.Sprintf(" (revoked %s, %s", r.Time.Format("2006-01-02"), r.Reason)
		switch {
		case k.RotatedTo != "":
			trust += "; earlier claims count as " + short(k.RotatedTo, 8) + "'s"
		case r.Successor != "":
			trust += "; successor " + short(r.Successor, 8) + " not counted: it must vote here and certify this key, which must have voted here"
		}
		trust += ")"
	}
	return trust
}

// printKeyResult reports a certified, revoked or announced key.
func (g *globals) printKeyResult(verb string, res *core.KeyResult) error {
	if g.json {
		return g.printJSON(res)
	}
	g.printf("%s %s: %s\n", verb, res.Fingerprint, trustWords(res.KeyInfo))
	if res.Published {
		g.printf("published on the keys topic\n")
	} else {
		fmt.Fprintf(g.errOut, "stored locally; nothing was published (no lebowskid running): start it (it announces its own key) or run `lebowski key announce %s` when it runs\n", res.Fingerprint)
	}
	return nil
}

func newKeyCertifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "certify FINGERPRINT",
		Short: "Certify a stored builder key with this node's key (as gpg --sign-key) and publish it",
		Long: `Certify a stored builder key with this node's key (an OpenPGP certification,
as gpg --sign-key makes) and publish the certified key on the keys topic.
Nodes that trust this node's key count the certified key as "certified"
within their trust_hops (docs/TRUST.md). For diversity in the score, a
certified key counts as the same operator as the key its certification
path starts from: certify your own machines' keys; trust another
organisation's key directly to count it as a separate operator.
Import the key first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fpr, err := fingerprintArg(args[0], "")
			if err != nil {
				return err
			}
			b, done, err := g.api(cmd.Context(), write)
			if err != nil {
				return err
			}
			defer done()
			res, err := b.CertifyKey(cmd.Context(), fpr)
			if err != nil {
				return notFoundIsUsage(err, "import the key first with `lebowski key import`")
			}
			return g.printKeyResult("certified", res)
		},
	}
}

func newKeyRevokeCmd(g *globals) *cobra.Command {
	var successor, reason string
	var compromised bool
	cmd := &cobra.Command{
		Use:   "revoke [--successor FPR] [--reason TEXT] [--compromised]",
		Short: "Revoke this node's builder key and publish the revocation",
		Long: `Revoke this node's builder key: a key revocation signature made with the key
itself, stored and published on the keys topic. Every node stops counting
the key's claims and certifications. With --successor (a rotation) the
revocation names the key that replaces it: once the successor certifies
this key (run ` + "`lebowski key certify OLD`" + ` where the successor is the
node's key), nodes where this key voted and the successor votes count the
old key's claims signed before the revocation as the successor's
(` + "`lebowski key rotate`" + ` does all of it). --compromised: none of the key's signatures count, whenever
made (no successor). The node signs nothing with a revoked key: generate a
new one (docs/TRUST.md, rotation).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if successor != "" {
				var err error
				if successor, err = fingerprintArg(successor, "--successor: "); err != nil {
					return err
				}
			}
			b, done, err := g.api(cmd.Context(), write)
			if err != nil {
				return err
			}
			defer done()
			res, err := b.RevokeKey(cmd.Context(), core.RevokeRequest{Successor: successor, Reason: reason, Compromised: compromised})
			if core.IsInvalid(err) {
				return usageErr("%v", err)
			}
			if err != nil {
				return err
			}
			if successor != "" && !g.json {
				fmt.Fprintf(g.errOut, "next: on the node whose key is %s, run `lebowski key certify %s`: the rotation counts nowhere until the successor acknowledges it\n", short(successor, 8), res.Fingerprint)
			}
			return g.printKeyResult("revoked", res)
		},
	}
	cmd.Flags().StringVar(&successor, "successor", "", "fingerprint of the key that replaces this one (a rotation)")
	cmd.Flags().StringVar(&reason, "reason", "", "one line kept in the revocation")
	cmd.Flags().BoolVar(&compromised, "compromised", false, "the key was stolen or leaked: none of its signatures count")
	return cmd
}

func newKeyAnnounceCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "announce [FINGERPRINT]",
		Short: "Publish this node's key (or a stored key) on the keys topic now (needs lebowskid)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fpr := ""
			if len(args) == 1 {
				var err error
				if fpr, err = fingerprintArg(args[0], ""); err != nil {
					return err
				}
			}
			b, done, err := g.api(cmd.Context(), write)
			if err != nil {
				return err
			}
			defer done()
			res, err := b.AnnounceKey(cmd.Context(), fpr)
			if err != nil {
				return notFoundIsUsage(err, "list known keys with `lebowski key list`")
			}
			return g.printKeyResult("announced", res)
		},
	}
}

// fingerprintArg normalizes a fingerprint given on the command line; a
// malformed one is a usage error (exit 2), prefixed with what.
func fingerprintArg(s, what string) (string, error) {
	fpr := vocab.NormalizeFingerprint(s)
	if err := vocab.CheckFingerprint(fpr); err != nil {
		return "", usageErr("%s%v", what, err)
	}
	return fpr, nil
}

func shortAll(fprs []string, n int) []string {
	out := make([]string, len(fprs))
	for i, f := range fprs {
		out[i] = short(f, n)
	}
	return out
}

func (g *globals) reportKey(id *attest.Identity, created bool) error {
	l, err := g.layout()
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(map[string]any{"fingerprint": id.Fingerprint(), "created": created, "path": l.BuilderKey()})
	}
	if created {
		g.printf("generated builder key %s\n  private key: %s (0600)\n", id.Fingerprint(), l.BuilderKey())
	} else {
		g.printf("builder key %s already exists (use --force to replace it)\n", id.Fingerprint())
	}
	return nil
}

func readFileOrStdin(f string) ([]byte, error) {
	if f == "-" {
		return readAllLimited(os.Stdin, 64<<20)
	}
	fh, err := os.Open(f)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", f)
	}
	return readAllLimited(fh, 64<<20)
}
