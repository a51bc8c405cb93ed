package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"text/tabwriter"

	"github.com/lebowski-dist/lebowski/cmd/node/core"
	"github.com/spf13/cobra"
)

func newClaimsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "claims", Short: "Import and list signed rebuild claims"}
	imp := &cobra.Command{
		Use:   "import FILE...",
		Short: "Verify and store claims (one JSON envelope per line; - for stdin)",
		Long: `Verify and store claims. Each file holds signed envelopes, one per line
(as written by 'lebowski claims export' or 'lebowski build --json'). Every claim is
checked (signature, schema, timestamp) before it is stored; a bad claim is
reported and skipped, the others are kept. Exit 2 if any claim was rejected.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var wires [][]byte
			for _, f := range args {
				data, err := readFileOrStdin(f)
				if err != nil {
					return usageErr("%v", err)
				}
				sc := bufio.NewScanner(bytes.NewReader(data))
				sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
				for sc.Scan() {
					line := bytes.TrimSpace(sc.Bytes())
					if len(line) == 0 {
						continue
					}
					wires = append(wires, append([]byte(nil), line...))
				}
				if err := sc.Err(); err != nil {
					return usageErr("%s: %v", f, err)
				}
			}
			b, done, err := g.api(cmd.Context(), write)
			if err != nil {
				return err
			}
			defer done()
			res, err := b.ImportClaims(cmd.Context(), wires)
			if err != nil {
				return err
			}
			counts := map[string]int{}
			for _, r := range res {
				counts[r.Status]++
			}
			if g.json {
				if err := g.printJSON(map[string]any{"results": res, "counts": counts}); err != nil {
					return err
				}
			} else {
				for i, r := range res {
					if r.Status == "over_budget" {
						fmt.Fprintf(g.errOut, "claim %d: not stored, over budget: %s (trust the key with `lebowski key trust`, or raise budget: in the config)\n", i+1, r.Error)
					} else if r.Error != "" {
						fmt.Fprintf(g.errOut, "claim %d: rejected: %s\n", i+1, r.Error)
					} else if r.Status == "equivocation" {
						fmt.Fprintf(g.errOut, "claim %s: EQUIVOCATION: its builder signed another hash for the same recipe; proof kept, key flagged\n", r.ID)
					}
				}
				line := fmt.Sprintf("%d claims: %d new, %d duplicate, %d equivocation, %d rejected", len(res), counts["new"], counts["duplicate"], counts["equivocation"], counts["rejected"])
				if n := counts["over_budget"]; n > 0 {
					line += fmt.Sprintf(", %d over budget", n)
				}
				g.printf("%s\n", line)
			}
			if counts["rejected"]+counts["over_budget"] > 0 {
				return silent(ExitUsage)
			}
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list [PACKAGE]",
		Short: "List stored claims",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pkg := ""
			if len(args) == 1 {
				pkg = args[0]
			}
			rows, err := ask(cmd.Context(), g, func(b core.API) ([]core.ClaimRow, error) {
				return b.Claims(cmd.Context(), core.ClaimsQuery{Package: pkg})
			})
			if err != nil {
				return err
			}
			if g.json {
				if rows == nil {
					rows = []core.ClaimRow{}
				}
				return g.printJSON(rows)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLAIM\tPACKAGE\tVERSION\tOPINION\tRESULT\tBUILDER\tTIME")
			for _, r := range rows {
				op := r.Opinion
				if op == "" {
					op = "(vanilla)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", short(r.ID, 16), r.Package, r.Version, op, r.Result, short(r.Builder, 16), r.Timestamp.Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(imp, list, newClaimShowCmd(g), newClaimExportCmd(g))
	return cmd
}
