package source_test

import (
	"context"
	"fmt"
	"log"
	"os/exec"
	"path/filepath"

	"github.com/lebowski-dist/lebowski/builder/source"
)

// Fetch a verified source package and unpack it with dpkg-source.
func ExampleFetcher_Fetch() {
	f, err := source.New("/var/cache/lebowski/source") // deb.debian.org, host's Debian keyring
	if err != nil {
		log.Fatal(err)
	}
	src, err := f.Fetch(context.Background(), "bookworm", "hello", "2.10-3")
	if err != nil {
		log.Fatal(err) // errors.Is(err, source.ErrHashMismatch), ErrBadSignature, ErrNotFound…
	}
	fmt.Println("debian_source_sha256:", src.DscSHA256)
	// src.Dir is shared and read-only: extract elsewhere.
	out := filepath.Join("/tmp/build", src.Package)
	if err := exec.Command("dpkg-source", "--no-check", "-x", filepath.Join(src.Dir, src.DscName), out).Run(); err != nil {
		log.Fatal(err)
	}
}
