package hv_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// BenchmarkLinuxFullBoot: the Debian 6.1 cloud kernel to its init's
// marker line, with the same initramfs and command line, under hv (both
// boot paths), QEMU microvm with KVM and QEMU with TCG, in one run. It
// needs hardware KVM: on kvm_pvm Linux does not reach init in useful time
// (docs/kvm-notes.md), and the early-boot benchmark covers that machine.
func BenchmarkLinuxFullBoot(b *testing.B) {
	testenv.RequireHardwareKVM(b)
	hv := testenv.Bin(b, "hv")
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	k := kerneltest.Kernel(b, kerneltest.Cloud56, kerneltest.Cloud56Version)
	initrd := busyboxInitramfs(b, "poweroff -f")
	const cmdline = "console=ttyS0 panic=-1"
	const marker = "XENO-INIT-REACHED"
	const bound = 3 * time.Minute
	for i := 0; i < b.N; i++ {
		rows := []struct {
			name string
			t    time.Duration
			why  string
		}{}
		add := func(name string, t time.Duration, why string) {
			rows = append(rows, struct {
				name string
				t    time.Duration
				why  string
			}{name, t, why})
		}
		for _, boot := range []string{"elf", "bzimage"} {
			t, why := timeToLine(b, bound, marker, hv, "--kernel", k.BzImagePath(), "--initrd", initrd,
				"--memory", "256", "--vcpus", "2", "--boot", boot, "--cmdline", cmdline)
			add("hv --boot "+boot, t, why)
		}
		t, why := timeToLine(b, bound, marker, qemu, "-M", "microvm,rtc=on", "-accel", "kvm", "-cpu", "host",
			"-nodefaults", "-no-user-config", "-display", "none", "-m", "256", "-smp", "2",
			"-serial", "stdio", "-kernel", k.BzImagePath(), "-initrd", initrd, "-append", cmdline)
		add("QEMU microvm -accel kvm", t, why)
		// microvm under TCG stalls calibrating the TSC without a PIT
		// reference; the pc machine is QEMU's usual TCG target.
		t, why = timeToLine(b, bound, marker, qemu, "-M", "pc", "-accel", "tcg",
			"-nodefaults", "-no-user-config", "-display", "none", "-m", "256", "-smp", "2",
			"-serial", "stdio", "-kernel", k.BzImagePath(), "-initrd", initrd, "-append", cmdline)
		add("QEMU pc -accel tcg", t, why)
		fmt.Printf("\nLinux 6.1 cloud full boot to init's marker, 2 vCPUs, 256 MiB\n")
		for _, r := range rows {
			fmt.Printf("%-40s %s\n", r.name, fmtReach(r.t, r.why))
			if r.t > 0 {
				b.ReportMetric(r.t.Seconds(), strings.ReplaceAll(r.name, " ", "_")+"-s")
			}
		}
	}
}
