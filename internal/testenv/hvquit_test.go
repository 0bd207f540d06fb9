package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Go program's own SIGQUIT dump, with a goroutine blocked in a syscall
// inside a method named like hv's, is read the way an hv's is.
func TestStuckInKVMRun(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/x\n\ngo 1.21\n",
		"hv/kvm/kvm.go": `package kvm

import (
	"syscall"
	"unsafe"
)

type VCPU struct{ FD int }

//go:noinline
func (c *VCPU) Run() {
	var b [1]byte
	syscall.Syscall(syscall.SYS_READ, uintptr(c.FD), uintptr(unsafe.Pointer(&b[0])), 1)
}

//go:noinline
func Other(fd int) {
	var b [1]byte
	syscall.Syscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1)
}
`,
		"hv/vm/vm.go": `package vm

import "example.com/x/hv/kvm"

type VM struct{}

//go:noinline
func (v *VM) runVCPU(c *kvm.VCPU, inRun bool) {
	if inRun {
		c.Run()
	} else {
		kvm.Other(c.FD)
	}
}

// Start runs one vCPU goroutine per element of inRun.
func (v *VM) Start(fd int, inRun ...bool) {
	for _, r := range inRun {
		go v.runVCPU(&kvm.VCPU{FD: fd}, r)
	}
}
`,
		"main.go": `package main

import (
	"fmt"
	"os"

	"example.com/x/hv/kvm"
	"example.com/x/hv/vm"
)

func main() {
	r, _, _ := os.Pipe()
	var inRun []bool
	for _, a := range os.Args[1:] {
		inRun = append(inRun, a == "run")
	}
	if len(inRun) == 0 {
		go (&kvm.VCPU{FD: int(r.Fd())}).Run()
	}
	new(vm.VM).Start(int(r.Fd()), inRun...)
	fmt.Println("ready")
	select {}
}
`,
	}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", "prog", ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("cannot build the dump program: %v\n%s", err, out)
	}
	dump := func(args ...string) string {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := exec.CommandContext(ctx, dir+"/prog", args...)
		QuitOnCancel(cmd)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := out.Read(buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		cancel()
		cmd.Wait()
		return stderr.String()
	}
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"run"}, true},
		{[]string{"run", "run"}, true},
		// One vCPU blocked in the hv (a read outside KVM_RUN) is the
		// hv's, even with the other inside KVM_RUN.
		{[]string{"run", "other"}, false},
		{[]string{"other"}, false},
		// KVM_RUN outside any vCPU loop is no vCPU.
		{nil, false},
	} {
		d := dump(c.args...)
		if !strings.Contains(d, "[syscall") {
			t.Fatalf("%v: no goroutine in a syscall in the dump:\n%s", c.args, d)
		}
		if got := StuckInKVMRun(d); got != c.want {
			t.Errorf("%v: StuckInKVMRun = %v, want %v; dump:\n%s", c.args, got, c.want, d)
		}
	}
}

// Only the lab's two known ways of spoiling a micro-guest run earn it a
// second run, and only in the lab, and only once.
func TestLabLoss(t *testing.T) {
	const triple = "hv: crash: vCPU 0: triple fault (KVM_EXIT_SHUTDOWN)\nRIP=000000000000fff0\n"
	const stuck = "goroutine 1 [running]:\nmain.main()\n\ngoroutine 7 [syscall, locked to thread]:\n" +
		"syscall.Syscall(...)\ngithub.com/xeno-hv/xeno/hv/kvm.(*VCPU).Run(...)\n" +
		"github.com/xeno-hv/xeno/hv/vm.(*VM).runVCPU(...)\n"
	const blocked = "goroutine 7 [chan receive]:\ngithub.com/xeno-hv/xeno/hv/vm.(*VM).runVCPU(...)\n"
	for _, c := range []struct {
		name     string
		lab      bool
		try      int
		timedOut bool
		stderr   string
		want     bool
	}{
		{"triple fault in the lab", true, 1, false, triple, true},
		{"triple fault again", true, 2, false, triple, false},
		{"triple fault on the host", false, 1, false, triple, false},
		{"stall inside KVM_RUN", true, 1, true, stuck, true},
		{"stall inside the hv", true, 1, true, blocked, false},
		{"dump of a run that ended", true, 1, false, stuck, false},
		{"the guest's own crash", true, 1, false, "hv: crash: guest reported a crash via the shutdown port\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.lab {
				t.Setenv(InLabEnv, "1")
			} else {
				t.Setenv(InLabEnv, "")
			}
			if got := LabLoss(t, c.try, c.timedOut, c.stderr); got != c.want {
				t.Errorf("LabLoss = %v, want %v", got, c.want)
			}
		})
	}
}
