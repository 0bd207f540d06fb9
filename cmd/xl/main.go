// Command xl: see README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "xl: not built yet in this tree")
	os.Exit(2)
}
