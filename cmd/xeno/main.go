// Command xeno is the image builder and kernel store front end.
// Each command group lives in its own file of this package.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: xeno COMMAND [ARGS]

commands:
  kernel fetch|import|list|inspect ...   the versioned kernel store
  lock RECIPE                            resolve a recipe to RECIPE.lock
  build RECIPE [-o DIR] [--hv-release X] [--cache DIR]   build the outputs
  verify RECIPE                          build twice and compare bytes
  version                                print the hv release this tree builds
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "kernel":
		err = kernelCmd(args)
	case "lock":
		err = lockCmd(args)
	case "build":
		err = buildCmd(args)
	case "verify":
		err = verifyCmd(args)
	case "version":
		err = versionCmd(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "xeno: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xeno:", err)
		os.Exit(1)
	}
}
