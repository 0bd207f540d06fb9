// Command hv: see README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "hv: not built yet in this tree")
	os.Exit(2)
}
