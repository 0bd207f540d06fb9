package kernel_test

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

var endedRE = regexp.MustCompile(`hv: domain ended: poweroff after ([0-9.]+) s`)

// BenchmarkXenoKernelBoot boots the xeno kernel with 2 vCPUs and 256 MiB
// to a busybox /init that prints a marker and powers off: under hv (hv
// start to the guest's poweroff, as hv reports it) and, in the same run,
// under QEMU TCG with the same kernel, initramfs and command line (exec
// to exit). Where /dev/kvm is missing, hv runs in the nested lab, whose
// emulated AMD-V is far slower than hardware; the table says which.
func BenchmarkXenoKernelBoot(b *testing.B) {
	why := kvmlab.Need(b)
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	k := kerneltest.Xeno(b, "")
	initrd := kvmlab.BusyboxInitramfs(b, "echo XENO-USER-SPACE-UP\npoweroff -f\n")
	cl := "console=ttyS0 panic=-1"
	var hvSum, qemuSum float64
	for i := 0; i < b.N; i++ {
		runs := kvmlab.BootAll(b, why, []kvmlab.Boot{{Name: "hv", Kernel: k.BzImagePath(), Initrd: initrd, Cmdline: cl,
			Args: []string{"--memory", "256", "--vcpus", "2"}}})
		m := endedRE.FindStringSubmatch(runs["hv"].Output)
		if m == nil || !strings.Contains(runs["hv"].Output, "XENO-USER-SPACE-UP") {
			b.Fatalf("hv boot did not reach the marker and a poweroff:\n%s", runs["hv"].Output)
		}
		sec, _ := strconv.ParseFloat(m[1], 64)
		hvSum += sec

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		start := time.Now()
		out, err := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-M", "pc", "-cpu", "max", "-smp", "2", "-m", "256",
			"-display", "none", "-serial", "stdio", "-monitor", "none", "-nodefaults", "-no-reboot",
			"-kernel", k.BzImagePath(), "-initrd", initrd, "-append", cl).CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "XENO-USER-SPACE-UP") {
			b.Fatalf("qemu: %v\n%s", err, out)
		}
		qemuSum += time.Since(start).Seconds()
	}
	n := float64(b.N)
	where := "hv on /dev/kvm"
	if why != "" {
		where = "hv in the nested lab (kvm-amd on QEMU TCG's emulated AMD-V)"
	}
	b.ReportMetric(hvSum/n, "hv-s/boot")
	b.ReportMetric(qemuSum/n, "qemu-tcg-s/boot")
	fmt.Printf("\nxeno kernel %s, 2 vCPUs, 256 MiB, busybox /init to ACPI poweroff (mean of %d)\n", k.Release, b.N)
	fmt.Printf("  %-62s %8.2f s\n", where, hvSum/n)
	fmt.Printf("  %-62s %8.2f s\n", "QEMU -accel tcg -M pc, same kernel, initramfs, command line", qemuSum/n)
}
