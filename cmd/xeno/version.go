package main

import (
	"fmt"

	"github.com/xeno-hv/xeno/hv/abi"
)

func versionCmd(args []string) error {
	b := abi.Current()
	fmt.Printf("release %s\ninterface %s\nbuild_id %s\nchangeset %s\ncaps %s\n",
		b.Release, b.Release.Interface().Short(), b.BuildID, b.Changeset, b.Caps())
	return nil
}
