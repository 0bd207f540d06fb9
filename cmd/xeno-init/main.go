// Command xeno-init is the PID 1 of xeno images; the logic is in initd.
package main

import (
	"fmt"
	"os"

	"github.com/xeno-hv/xeno/initd"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		in, err := initd.Pinned()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("xeno-init pinned interface %s\n", in)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "xeno-init: must run as PID 1 (the init of a xeno image)")
		os.Exit(2)
	}
	initd.Main()
}
