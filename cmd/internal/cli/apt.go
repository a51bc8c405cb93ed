package cli

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/cmd/internal/aptgate"
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
