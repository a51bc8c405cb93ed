package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lebowski-dist/lebowski/attest"
	"github.com/lebowski-dist/lebowski/attest/vocab"
	"github.com/lebowski-dist/lebowski/cmd/node/core"
)

// newClaimShowCmd: `lebowski claims show ID`.
func newClaimShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one claim: statement, signer and trust, where it came from, evidence held",
		Long: `Show one stored claim. ID is the full claim ID or its first 12+ characters
(as 'lebowski claims list' prints them). Exit 1 when no such claim is stored.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := ask(cmd.Context(), g, func(api core.API) (*core.ClaimDetail, error) { return api.Claim(cmd.Context(), args[0]) })
			if err != nil {
				return claimErr(err)
			}
			if g.json {
				return g.printJSON(d)
			}
			st := d.Statement
			op := st.Opinion.Name
			if op == "" {
				op = "(vanilla)"
			}
			g.printf("Claim     %s\n", d.ID)
			g.printf("Package   %s %s (Debian %s, %s/%s), opinion %s\n", st.Package, st.Version, st.DebianVersion, st.Suite, st.Arch, op)
			if st.Opinion.CID != "" {
				g.printf("Opinion   %s\n", st.Opinion.CID)
			}
			g.printf("Recipe    %s\n", st.RecipeID)
			g.printf("Source    sha256 %s\n", st.DebianSourceSHA256)
			g.printf("Image     %s\n", st.ContainerDigest)
			g.printf("Result    %s\n", st.Result)
			for _, a := range st.Artifacts {
				g.printf("Artifact  %s  %s\n", a.SHA256, a.Name)
			}
			g.printf("Signed    %s by %s (%s", st.Timestamp.Format(time.RFC3339), d.Signer.Fingerprint, d.Signer.Trust)
			if len(d.Signer.Via) > 0 {
				g.printf(" via %s", strings.Join(d.Signer.Via, " → "))
			}
			if d.Signer.Equivocating {
				g.printf(", EQUIVOCATING")
			}
			g.printf(")\n")
			switch {
			case d.Origin == nil || d.Origin.Via == "":
				g.printf("Arrived   (not recorded)\n")
			case d.Origin.Peer != "":
				g.printf("Arrived   %s by %s from peer %s\n", d.Origin.At.Format(time.RFC3339), d.Origin.Via, d.Origin.Peer)
			default:
				g.printf("Arrived   %s by %s\n", d.Origin.At.Format(time.RFC3339), d.Origin.Via)
			}
			for _, e := range d.Evidence {
				where := "held here"
				if !e.Held {
					where = "not held here: `lebowski blob get " + e.CID + "` asks peers"
				}
				g.printf("Evidence  %-9s %s (%s)\n", e.Kind, e.CID, where)
			}
			g.printf("Check it yourself: lebowski claims export %s --dir DIR, then gpg --verify\n", short(d.ID, 20))
			return nil
		},
	}
}

// newClaimExportCmd: `lebowski claims export ID --dir D [--format in-toto]`.
func newClaimExportCmd(g *globals) *cobra.Command {
	var dir, format string
	cmd := &cobra.Command{
		Use:   "export ID --dir DIR",
		Short: "Write a claim's evidence so anyone can check it with gpg or in-toto tools",
		Long: `Write one claim's evidence into DIR.

--format openpgp (default) writes
  <id>.json       the signed statement, byte for byte
  <id>.json.asc   the detached OpenPGP signature over it
  <fpr>.asc       the signer's public key
  <id>.claim      the envelope, for 'lebowski claims import' elsewhere
so that, with nothing but GnuPG:
  gpg --homedir "$(mktemp -d)" --import DIR/<fpr>.asc
  gpg --homedir … --verify DIR/<id>.json.asc DIR/<id>.json

--format in-toto writes <id>.intoto.json: the claim as an in-toto Statement
v1 with a SLSA provenance v1 predicate, in a DSSE envelope signed by this
node's builder key (own claims only), plus <fpr>.asc.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usageErr("claims export needs --dir DIR")
			}
			if format != "openpgp" && format != "in-toto" {
				return usageErr("--format %q: want openpgp or in-toto", format)
			}
			d, err := ask(cmd.Context(), g, func(api core.API) (*core.ClaimDetail, error) { return api.Claim(cmd.Context(), args[0]) })
			if err != nil {
				return claimErr(err)
			}
			files := map[string][]byte{d.Signer.Fingerprint + ".asc": []byte(d.SignerKey)}
			if format == "openpgp" {
				files[d.ID+".json"] = d.Payload
				files[d.ID+".json.asc"] = []byte(d.Signature)
				files[d.ID+".claim"] = append(append([]byte(nil), d.Wire...), '\n')
			} else {
				env, err := ask(cmd.Context(), g, func(api core.API) (*attest.DSSEEnvelope, error) { return api.InToto(cmd.Context(), d.ID) })
				if err != nil {
					return claimErr(err)
				}
				b, err := env.Encode()
				if err != nil {
					return err
				}
				files[d.ID+".intoto.json"] = append(b, '\n')
				if env.Signatures[0].KeyID != d.Signer.Fingerprint {
					return fmt.Errorf("in-toto envelope signed by %s, claim by %s", env.Signatures[0].KeyID, d.Signer.Fingerprint)
				}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return envErr(err)
			}
			var written []string
			for name, data := range files {
				p := filepath.Join(dir, name)
				if err := writeFileAtomic(p, data); err != nil {
					return envErr(err)
				}
				written = append(written, p)
			}
			if g.json {
				return g.printJSON(map[string]any{"id": d.ID, "files": written})
			}
			for _, p := range written {
				g.printf("wrote %s\n", p)
			}
			if format == "openpgp" {
				g.printf("check: gpg --homedir \"$(mktemp -d)\" --import %s.asc && gpg --verify %s.json.asc %s.json (same --homedir)\n",
					filepath.Join(dir, d.Signer.Fingerprint), filepath.Join(dir, d.ID), filepath.Join(dir, d.ID))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write into (created if missing)")
	cmd.Flags().StringVar(&format, "format", "openpgp", "openpgp (payload + .asc + key) or in-toto (DSSE envelope)")
	return cmd
}

// claimErr maps "no such claim" to exit 1 and a bad ID to exit 2.
func claimErr(err error) error {
	if core.IsNotFound(err) {
		return &ExitError{Code: ExitMismatch, Err: err}
	}
	return notFoundIsUsage(err, "")
}

// newBlobCmd: `lebowski blob get CID [-o FILE]`.
func newBlobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "blob", Short: "Get content-addressed evidence: buildinfo, build logs, locks, opinions, .debs"}
	var out string
	var local bool
	get := &cobra.Command{
		Use:   "get CID",
		Short: "Write a blob to stdout or -o FILE, from this node or (through the daemon) from peers",
		Long: `Get a blob by CID: from this node's store, else — when lebowskid runs and
--local is not given — from any peer that has it. The bytes are checked
against the CID before they are written. Exit 1 when nobody has it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cid := args[0]
			if _, err := vocab.ParseCID(cid); err != nil {
				return usageErr("%v", err)
			}
			api, done, err := g.api(cmd.Context(), read)
			if err != nil {
				return err
			}
			defer done()
			get := api.FetchBlob // this node first, then peers
			if local {
				get = api.GetBlob
			}
			data, err := get(cmd.Context(), cid)
			if err != nil {
				return claimErr(err)
			}
			if vocab.CID(data) != cid {
				return &ExitError{Code: ExitMismatch, Err: fmt.Errorf("blob %s: the bytes received hash to %s; refusing to write them", cid, vocab.CID(data))}
			}
			if out == "" || out == "-" {
				_, err := g.out.Write(data)
				return err
			}
			if err := writeFileAtomic(out, data); err != nil {
				return envErr(err)
			}
			fmt.Fprintf(g.errOut, "wrote %s (%d bytes, cid %s)\n", out, len(data), cid)
			return nil
		},
	}
	get.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of stdout")
	get.Flags().BoolVar(&local, "local", false, "only this node's store; never ask peers")
	cmd.AddCommand(get)
	return cmd
}
