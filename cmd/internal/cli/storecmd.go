package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/cmd/internal/human"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Maintain the node's claim store"}
	compact := &cobra.Command{
		Use:   "compact",
		Short: "Rewrite the store file without its unused space (stop lebowskid first)",
		Long: `Rewrite the store file with its pages full and without free pages, then replace it.
Claims arrive in random order, so the file holds about a third of unused space, and it
never shrinks by itself. Needs the store to itself (stop lebowskid first) and free space
in the data dir for the copy; the store is only replaced once the copy is complete, so
an interruption leaves it as it was. Takes about 20 s per million claims.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c, err := g.dial(cmd.Context()); err != nil {
				return err
			} else if c != nil {
				return envErr(errors.New("lebowskid is running with this data dir and holds the store: stop it first (sudo systemctl stop lebowskid), compact, then start it again"))
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "compacting %s …\n", cfg.Layout().StoreDB())
			res, err := core.Compact(cfg, g.log)
			if errors.Is(err, core.ErrStoreBusy) {
				return envErr(fmt.Errorf("%w: stop lebowskid first", err))
			}
			if err != nil {
				return envErr(err)
			}
			if g.json {
				return g.printJSON(res)
			}
			saved := 0.0
			if res.BytesBefore > 0 {
				saved = 100 * float64(res.BytesBefore-res.BytesAfter) / float64(res.BytesBefore)
			}
			fmt.Fprintf(g.out, "compacted %s: %s → %s (%.0f%% smaller), %d claims, in %s\n",
				res.Path, human.Bytes(res.BytesBefore), human.Bytes(res.BytesAfter), saved, res.Claims, res.Took.Round(time.Millisecond))
			return nil
		},
	}
	cmd.AddCommand(compact)
	return cmd
}
