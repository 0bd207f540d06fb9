package hv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/internal/atomicfile"
	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// writeInitramfs writes an uncompressed initramfs with the builder's own
// writer, so the Linux tests boot the format the images carry.
func writeInitramfs(t testing.TB, files []images.File) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "initrd.cpio")
	err := atomicfile.Write(p, 0o644, func(f *os.File) error {
		return images.WriteInitramfs(f, files, images.None, time.Unix(0, 0))
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// earlyBootLines are the console lines that show Linux read what the hv
// gave it, in the order the kernel prints them, each with the most time
// it may take here from process start. docs/kvm-notes.md measured 27 s
// to the last line on a quiet machine and 142 s under load average 14 on
// the software KVM (kvm_pvm), where kernel mode is emulated; the bounds
// are about 4x the loaded figures.
var earlyBootLines = []struct {
	what  string
	re    string
	bound time.Duration
}{
	{"banner", `Linux version 6\.1\.\S+`, 480 * time.Second},
	{"command line", `Command line: .*xeno\.test=early`, 480 * time.Second},
	{"e820", `BIOS-e820: \[mem 0x0000000000100000-0x000000000fffffff\] usable`, 480 * time.Second},
	{"RSDP", `ACPI: RSDP 0x00000000000E0000`, 480 * time.Second},
	{"XSDT", `ACPI: XSDT 0x`, 480 * time.Second},
	{"FACP", `ACPI: FACP 0x`, 480 * time.Second},
	{"APIC", `ACPI: APIC 0x`, 480 * time.Second},
	{"MADT SMP", `ACPI: Using ACPI \(MADT\) for SMP configuration information`, 600 * time.Second},
	{"2 CPUs", `smpboot: Allowing 2 CPUs, 0 hotplug CPUs`, 600 * time.Second},
}

// TestLinuxEarlyBoot boots the pinned Debian 6.1 cloud kernel, decompressed
// in Go and entered at startup_64, with 2 vCPUs and 256 MiB, and checks
// from the console that it read the hv's e820 map, ACPI tables and MADT.
// Under kvm_pvm this is as far as Linux gets in useful time.
func TestLinuxEarlyBoot(t *testing.T) {
	testenv.RequireKVM(t)
	if testing.Short() {
		t.Skip("boots Linux: about 20 s under the software KVM")
	}
	testenv.Bin(t, "hv")
	k := kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version)
	initrd := writeInitramfs(t, []images.File{{Path: "init", Mode: 0o755, Data: []byte("#!/bin/sh\necho never reached here\n")}})
	l := startHV(t, "--kernel", k.BzImagePath(), "--initrd", initrd, "--memory", "256", "--vcpus", "2",
		"--boot", "elf", "--cmdline", "console=ttyS0 earlyprintk=ttyS0 xeno.test=early")
	var report strings.Builder
	for _, s := range earlyBootLines {
		at := l.waitForRegexp(t, s.re, s.bound)
		fmt.Fprintf(&report, "  %-14s %6.1f s\n", s.what, at.Seconds())
	}
	t.Logf("wall time from hv start to each line:\n%s", report.String())

	// Every e820 line the kernel printed is one the hv logged, and no more.
	kernelMap := matchAll(l.out.String(), `BIOS-e820: (\[mem [^\]]+\] .+)`)
	hvMap := matchAll(l.errout.String(), `hv: e820: (\[mem [^\]]+\] .+)`)
	if len(hvMap) == 0 || strings.Join(kernelMap, "\n") != strings.Join(hvMap, "\n") {
		t.Errorf("the kernel's e820 map differs from the hv's:\nkernel:\n%s\nhv:\n%s",
			strings.Join(kernelMap, "\n"), strings.Join(hvMap, "\n"))
	}
	// The kernel found the RSDP where the hv put it (boot_params) and
	// read the FADT and MADT through the XSDT.
	for _, sig := range []string{"XSDT", "FACP", "APIC", "DSDT"} {
		if !strings.Contains(l.out.String(), "ACPI: "+sig+" ") {
			t.Errorf("no ACPI %s line", sig)
		}
	}
	st := l.call(t, control.CmdStatus).Status
	if st.State != control.StateRunning || st.VCPUs != 2 {
		t.Errorf("status %+v", st)
	}
	l.call(t, control.CmdDestroy)
	expectEnd(t, l.wait(t), control.ReasonDestroyed)
}

func matchAll(s, re string) []string {
	var out []string
	for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(s, -1) {
		out = append(out, strings.TrimSpace(m[1]))
	}
	return out
}

// busyboxInitramfs is a static busybox and an init script that prints a
// marker and runs cmd (e.g. "poweroff -f").
func busyboxInitramfs(t testing.TB, cmd string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testenv.RequireCmd(t, "busybox")
		t.Fatal(err)
	}
	script := "#!/bin/busybox sh\n/bin/busybox echo XENO-INIT-REACHED\n/bin/busybox " + cmd + "\n"
	return writeInitramfs(t, []images.File{
		{Path: "bin/busybox", Mode: 0o755, Data: bb},
		{Path: "init", Mode: 0o755, Data: []byte(script)},
	})
}

// TestLinuxFullBoot boots the Debian kernel to init and lets init power
// off or reboot; it needs hardware KVM (kvm_pvm cannot reach init in
// useful time, see docs/kvm-notes.md).
func TestLinuxFullBoot(t *testing.T) {
	testenv.RequireHardwareKVM(t)
	testenv.Bin(t, "hv")
	k := kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version)
	for _, c := range []struct{ cmd, cmdline, reason string }{
		{"poweroff -f", "", control.ReasonPoweroff},
		{"reboot -f", "reboot=k", control.ReasonReboot},
	} {
		for _, boot := range []string{"bzimage", "elf"} {
			t.Run(boot+"/"+c.reason, func(t *testing.T) {
				r := runHVLong(t, 120*time.Second, "--kernel", k.BzImagePath(), "--initrd", busyboxInitramfs(t, c.cmd),
					"--memory", "256", "--vcpus", "2", "--boot", boot,
					"--cmdline", "console=ttyS0 panic=-1 "+c.cmdline)
				expectEnd(t, r, c.reason)
				if !strings.Contains(r.stdout, "XENO-INIT-REACHED") {
					t.Fatalf("init did not run:\n%s", r.stdout)
				}
				t.Logf("%s to %s in %v", boot, c.reason, r.elapsed)
			})
		}
	}
}

// TestLinuxSoak boots the xeno guest kernel to init and powers off N
// times in a row, with no flake allowed: N is XENO_SOAK (make soak sets
// 10), else 2. Without /dev/kvm it runs in the nested lab.
func TestLinuxSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("XENO_SOAK"))
	if n <= 0 {
		n = 2
	}
	why := kvmlab.Need(t)
	k := kerneltest.Xeno(t, "")
	initrd := kvmlab.BusyboxInitramfs(t, "echo XENO-INIT-REACHED\npoweroff -f\n")
	var boots []kvmlab.Boot
	for i := 0; i < n; i++ {
		boots = append(boots, kvmlab.Boot{Name: strconv.Itoa(i + 1), Kernel: k.BzImagePath(), Initrd: initrd,
			Cmdline: "console=ttyS0 panic=-1", Args: []string{"--memory", "256", "--vcpus", "2"}})
	}
	runs := kvmlab.BootAll(t, why, boots)
	for _, b := range boots {
		r := runs[b.Name]
		if r.Exit != 0 || !strings.Contains(r.Output, "XENO-INIT-REACHED") {
			t.Errorf("boot %s of %d: hv exit %d\n%s", b.Name, n, r.Exit, r.Output)
		}
	}
}

// TestXenoLinuxFullBoot boots the xeno guest kernel to a busybox /init
// with 1 and 2 vCPUs, through both boot paths (bzImage 64-bit entry and
// the ELF decompressed in Go), and lets init power off or reboot: the
// hv's exit code must say which, and /proc/cpuinfo must count the vCPUs.
// It runs on any KVM; without /dev/kvm, in the nested lab.
func TestXenoLinuxFullBoot(t *testing.T) {
	why := kvmlab.Need(t)
	k := kerneltest.Xeno(t, "")
	var boots []kvmlab.Boot
	type want struct {
		code, cpus int
	}
	wants := map[string]want{}
	for _, c := range []struct {
		cmd, cmdline string
		code         int
	}{
		{"poweroff -f", "", 0},
		{"reboot -f", "reboot=k", 10},
	} {
		initrd := kvmlab.BusyboxInitramfs(t, "mkdir -p /proc\nmount -t proc proc /proc\necho XENO-INIT-REACHED cpus=$(grep -c ^processor /proc/cpuinfo)\n"+c.cmd+"\n")
		for _, boot := range []string{"bzimage", "elf"} {
			for _, cpus := range []int{1, 2} {
				name := fmt.Sprintf("%s/%s/%dcpu", boot, strings.Fields(c.cmd)[0], cpus)
				boots = append(boots, kvmlab.Boot{Name: name, Kernel: k.BzImagePath(), Initrd: initrd,
					Cmdline: strings.TrimSpace("console=ttyS0 panic=-1 " + c.cmdline),
					Args:    []string{"--memory", "256", "--vcpus", strconv.Itoa(cpus), "--boot", boot}})
				wants[name] = want{c.code, cpus}
			}
		}
	}
	runs := kvmlab.BootAll(t, why, boots)
	for _, b := range boots {
		r, w := runs[b.Name], wants[b.Name]
		if r.Exit != w.code {
			t.Errorf("%s: hv exit %d, want %d", b.Name, r.Exit, w.code)
		}
		if !strings.Contains(r.Output, fmt.Sprintf("XENO-INIT-REACHED cpus=%d", w.cpus)) {
			t.Errorf("%s: init did not report %d CPUs", b.Name, w.cpus)
		}
		if m := regexp.MustCompile(`hv: domain ended: \S+ after ([0-9.]+) s`).FindStringSubmatch(r.Output); m != nil {
			t.Logf("%s: %s s", b.Name, m[1])
		}
		if t.Failed() {
			t.Logf("%s console:\n%s", b.Name, r.Output)
		}
	}
}
