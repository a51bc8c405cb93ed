package cli

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/store"
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
			l := g.layout()
			if err := l.Ensure(); err != nil {
				return envErr(err)
			}
			if _, err := os.Stat(l.BuilderKey()); err == nil && !force {
				id, err := attest.LoadIdentity(l.BuilderKey())
				if err != nil {
					return envErr(err)
				}
				return report(g, id, false)
			}
			id, err := attest.GenerateIdentity(name, "")
			if err != nil {
				return envErr(err)
			}
			if err := id.Save(l.BuilderKey(), force); err != nil {
				return envErr(err)
			}
			svc, done, err := g.localService()
			if err == nil {
				defer done()
				if _, err := svc.ImportKey(id.PublicKey(), attest.TrustOwn, "key gen"); err != nil {
					return envErr(err)
				}
			}
			return report(g, id, true)
		},
	}
	gen.Flags().StringVar(&name, "name", "Lebowski builder", "user ID name on the key")
	gen.Flags().BoolVar(&force, "force", false, "replace an existing key (its claims stay signed by the old one)")

	export := &cobra.Command{
		Use:   "export",
		Short: "Print this node's armored public key (give it to people who may trust you)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, _, err := g.layout().LoadIdentity(false, "")
			if err != nil {
				return envErr(err)
			}
			if g.json {
				arm, err := id.ArmoredPublicKey()
				if err != nil {
					return err
				}
				return g.printJSON(map[string]string{"fingerprint": id.Fingerprint(), "public_key": arm})
			}
			arm, err := id.ArmoredPublicKey()
			if err != nil {
				return err
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
			t := attest.Trust(importTrust)
			if t != attest.TrustUnvetted && t != attest.TrustTrusted && t != attest.TrustDistrusted {
				return usageErr("--trust %q: want unvetted, trusted or distrusted", importTrust)
			}
			b, done, err := g.backend(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var infos []store.KeyInfo
			for _, f := range args {
				data, err := readFileOrStdin(f)
				if err != nil {
					return usageErr("%v", err)
				}
				if _, err := attest.ParsePublicKey(data); err != nil {
					return usageErr("%s: %v", f, err)
				}
				ki, err := b.ImportKey(cmd.Context(), data, t, "import "+f)
				if err != nil {
					return err
				}
				infos = append(infos, ki)
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
				level = attest.Trust(args[1])
			}
			if level != attest.TrustUnvetted && level != attest.TrustTrusted && level != attest.TrustDistrusted {
				return usageErr("trust level %q: want trusted, unvetted or distrusted", level)
			}
			fpr := strings.ToUpper(strings.ReplaceAll(args[0], " ", ""))
			b, done, err := g.backend(cmd.Context())
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
			b, done, err := g.backend(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			keys, err := b.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				if keys == nil {
					keys = []store.KeyInfo{}
				}
				return g.printJSON(keys)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FINGERPRINT\tTRUST\tEQUIVOCATING\tFIRST SEEN\tSOURCE")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", k.Fingerprint, k.Trust, k.Equivocating, k.FirstSeen.Format("2006-01-02 15:04"), k.Source)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(gen, export, imp, trust, list)
	return cmd
}

func report(g *globals, id *attest.Identity, created bool) error {
	if g.json {
		return g.printJSON(map[string]any{"fingerprint": id.Fingerprint(), "created": created, "path": g.layout().BuilderKey()})
	}
	if created {
		g.printf("generated builder key %s\n  private key: %s (0600)\n", id.Fingerprint(), g.layout().BuilderKey())
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
	return readAllLimited(fh, 64<<20)
}
