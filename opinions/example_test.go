package opinions_test

import (
	"fmt"

	"github.com/lebowski-dist/lebowski/opinions"
)

func ExampleLoad() {
	o, err := opinions.Load("hello/o3.yaml", opinions.WithGitCommit(false))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(o.Package, o.Name, o.Purity, o.BinaryVersion())
	fmt.Println(o.Build.CFlags.Append)
	// Output:
	// hello o3 pure-compilation 2.10-3~o3+1
	// [-O3]
}
