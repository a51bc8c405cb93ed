package cli

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/internal/core"
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
			if err := id.Save(l.BuilderKey(), force); err != nil {
				return envErr(err)
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
				trust := string(k.Trust)
				if len(k.Via) > 0 {
					trust += " via " + strings.Join(shortAll(k.Via, 8), " → ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", k.Fingerprint, trust, k.Equivocating, k.FirstSeen.Format("2006-01-02 15:04"), k.Source)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(gen, export, imp, trust, list)
	return cmd
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
