package cli

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/cmd/internal/aptgate"
	"github.com/lebowski-dist/lebowski/cmd/internal/repo"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

func newAptCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apt-check [FILE.deb...]",
		Short: "apt's hook: refuse to unpack Lebowski builds the network has not verified",
		Long: `Decide whether dpkg may unpack each .deb: Lebowski builds (versions with
~<opinion>+N) must be SAFE TO INSTALL by this node's consensus; packages in
apt.require too; other packages pass (Debian's signature covers them).
Without arguments it reads apt's DPkg::Pre-Install-Pkgs input (protocol 3)
from $APT_HOOK_INFO_FD or stdin. Install the hook with the snippet in
docs/APT.md. When the node cannot be asked, Lebowski builds are refused.

Exit codes: 0 all may be unpacked, 1 at least one refused (apt aborts),
2 bad input.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var actions []aptgate.Action
			if len(args) > 0 {
				for _, a := range args {
					actions = append(actions, aptgate.Action{Path: a})
				}
			} else {
				in := g.in
				if fd := os.Getenv("APT_HOOK_INFO_FD"); fd != "" && fd != "0" {
					n, err := strconv.Atoi(fd)
					if err != nil {
						return usageErr("APT_HOOK_INFO_FD=%q is not a file descriptor", fd)
					}
					in = os.NewFile(uintptr(n), "apt-hook-info")
				}
				if in == nil {
					in = os.Stdin
				}
				var err error
				if actions, err = aptgate.ParseHook(in); err != nil {
					return usageErr("%v", err)
				}
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			gate := &aptgate.Gate{Policy: cfg.Apt}
			if len(actions) > 0 {
				api, done, err := g.api(ctx, read)
				if err != nil {
					gate.NodeErr = err
				} else {
					defer done()
					gate.API = api
				}
			}
			decisions, ok := gate.CheckAll(ctx, actions)
			if g.json {
				if decisions == nil {
					decisions = []aptgate.Decision{}
				}
				if err := g.printJSON(decisions); err != nil {
					return err
				}
			} else {
				for _, d := range decisions {
					if d.Kind == aptgate.KindOther && d.Allowed && g.verbose == 0 {
						continue
					}
					fmt.Fprintln(g.errOut, d.Line())
				}
			}
			if !ok {
				if !g.json {
					fmt.Fprintln(g.errOut, "lebowski: refusing to unpack the packages above; nothing was installed (docs/APT.md)")
				}
				return silent(ExitMismatch)
			}
			return nil
		},
	}
}

func newFetchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "fetch PACKAGE[/OPINION]",
		Short: "Keep a recipe's verified .debs in this node's apt repository (fetched from peers by hash)",
		Long: `Ask the running lebowskid to mirror a recipe: it follows the recipe's
claims, fetches the .debs its SAFE consensus names from any peer (checked
against the hashes) and serves them in its apt repository (repo.addr).
The choice is kept across restarts. Exit 1 when nothing can be served yet
(the reason is printed).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial(cmd.Context())
			if err != nil {
				return err
			}
			if c == nil {
				return envErr(fmt.Errorf("fetch needs a running lebowskid (it keeps and serves the packages): start it, or pass --socket"))
			}
			res, err := c.Mirror(cmd.Context(), args[0])
			if err != nil {
				return notFoundIsUsage(err, "")
			}
			if g.json {
				if err := g.printJSON(res); err != nil {
					return err
				}
			} else {
				for _, p := range res.Packages {
					g.printf("serving %s (sha256 %s, %d bytes)\n", p.Name, p.SHA256, p.Size)
				}
				if res.Reason != "" {
					g.printf("not served: %s\n", res.Reason)
				}
				if len(res.Packages) > 0 {
					g.printf("repository: %s (lebowski apt-source prints the sources.list line)\n", res.URL)
				}
			}
			if len(res.Packages) == 0 {
				return silent(ExitMismatch)
			}
			return nil
		},
	}
}

func newAptSourceCmd(g *globals) *cobra.Command {
	var keyOnly bool
	var keyPath string
	cmd := &cobra.Command{
		Use:   "apt-source",
		Short: "Print the sources.list line and signing key of this node's apt repository",
		Long: `Print what apt needs to install from this node's repository of verified
packages: a deb822-free one-line source with signed-by, and where to put the
key. With --key, print only the armored key:

  lebowski apt-source --key | sudo tee /etc/apt/keyrings/lebowski.asc
  lebowski apt-source | sudo tee /etc/apt/sources.list.d/lebowski.list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			if cfg.Repo.Addr == "" {
				return usageErr("this node serves no apt repository: set repo.addr (e.g. 127.0.0.1:9465) in %s and restart lebowskid", cfg.Layout().Config())
			}
			l := cfg.Layout()
			if err := l.CheckExists(); err != nil {
				return envErr(err)
			}
			id, _, err := core.LoadIdentity(l, false, "")
			if err != nil {
				return envErr(err)
			}
			arm, err := id.ArmoredPublicKey()
			if err != nil {
				return err
			}
			line := fmt.Sprintf("deb [signed-by=%s] http://%s %s %s", keyPath, cfg.Repo.Addr, repo.Suite, repo.Component)
			switch {
			case keyOnly:
				fmt.Fprint(g.out, arm)
			case g.json:
				return g.printJSON(map[string]string{"source": line, "key": arm, "key_path": keyPath, "fingerprint": id.Fingerprint()})
			default:
				g.printf("%s\n", line)
				fmt.Fprintf(g.errOut, "# the key (fingerprint %s) goes to %s: lebowski apt-source --key | sudo tee %s\n", id.Fingerprint(), keyPath, keyPath)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&keyOnly, "key", false, "print only the armored signing key")
	cmd.Flags().StringVar(&keyPath, "key-path", "/etc/apt/keyrings/lebowski.asc", "where the key will be installed (for signed-by)")
	return cmd
}
