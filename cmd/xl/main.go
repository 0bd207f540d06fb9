// Command xl is xeno's toolstack command; see docs/xl.md.
package main

import (
	"os"

	"github.com/xeno-hv/xeno/xl"
)

func main() {
	os.Exit(xl.Main(os.Args[1:], xl.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
