// Command kvmlab runs a shell script with hv and xl inside the nested-KVM
// lab (internal/kvmlab): a QEMU TCG machine with emulated AMD-V, for hosts
// that have no /dev/kvm of their own. `make run` uses it to boot the demo
// image under hv on such hosts; tests use the package directly.
//
//	kvmlab [--bin DIR] [--recipe FILE] [--file NAME=PATH]... [--timeout D] SCRIPT
//
// SCRIPT runs under busybox sh as root once /dev/kvm exists, with hv and
// xl on its PATH, $G the directory holding the --file files by NAME,
// $XENO_STATE_DIR an empty state directory and $GUEST_EXTRA what a guest's
// command line needs in the lab. The console streams to stdout; the exit
// status is the script's, or 1 when the lab itself failed.
//
// Inside the lab, its init runs "kvmlab hold-kvm READY" from the same
// binary to hold one VM for the lab's life (kvmlab.HoldKVM).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xeno-hv/xeno/internal/kvmlab"
)

type files map[string]string

func (f files) String() string { return fmt.Sprint(map[string]string(f)) }

func (f files) Set(s string) error {
	name, path, ok := strings.Cut(s, "=")
	if !ok || name == "" || strings.Contains(name, "/") || path == "" {
		return fmt.Errorf("want NAME=PATH with a plain NAME, got %q", s)
	}
	f[name] = path
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Inside the lab, its init runs this to hold a VM (kvmlab.HoldKVM).
	if len(args) == 2 && args[0] == "hold-kvm" {
		err := kvmlab.HoldKVM(args[1])
		fmt.Fprintln(stderr, "kvmlab: hold-kvm:", err)
		return 1
	}
	fs := flag.NewFlagSet("kvmlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	self, _ := os.Executable()
	bin := fs.String("bin", filepath.Dir(self), "directory holding hv and xl")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole run")
	recipe := fs.String("recipe", "recipes/minimal.toml", "the recipe whose busybox-static the lab runs")
	fl := files{}
	fs.Var(fl, "file", "NAME=PATH: put PATH at $G/NAME inside the lab (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: kvmlab [--bin DIR] [--recipe FILE] [--file NAME=PATH]... [--timeout D] SCRIPT")
		return 2
	}
	if err := kvmlab.Available(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	extra, err := kvmlab.GuestCmdline()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	spec := kvmlab.Spec{
		HV: filepath.Join(*bin, "hv"), XL: filepath.Join(*bin, "xl"), Recipe: *recipe,
		Files:   map[string][]byte{},
		Script:  "export G=/g XENO_STATE_DIR=/tmp/xeno GUEST_EXTRA='" + extra + "'\n" + fs.Arg(0),
		Console: stdout,
		Idle:    5 * time.Minute, // nothing a lab script here does is silent that long
	}
	for name, path := range fl {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "kvmlab: %v\n", err)
			return 1
		}
		spec.Files["/g/"+name] = data
	}
	// As the tests' lab runs do: a lab machine that died runs the script
	// once more in a fresh lab.
	res, err := kvmlab.RunAgainIfDead(*timeout, spec, func(_ *kvmlab.Result, err error) {
		fmt.Fprintf(stderr, "kvmlab: %v: the lab machine failed; running the script once more in a fresh lab\n", err)
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stderr, "kvmlab: the lab ran %v\n", res.Elapsed.Round(100*time.Millisecond))
	return res.Exit
}
