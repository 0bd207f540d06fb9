package hv_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// The benchmarks print a table with QEMU's figure from the same run; see
// docs/benchmarks-hv.md. Run them with `make bench-hv` (benchtime 1x: each
// benchmark does its own repetitions and reports medians).

const benchRuns = 21

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// timeExec runs cmd and returns the wall time from exec to exit.
func timeExec(b *testing.B, timeout time.Duration, name string, args ...string) (time.Duration, string, int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	if ctx.Err() != nil {
		b.Fatalf("%s %v: no exit within %v\n%s", name, args, timeout, out)
	}
	return d, string(out), code
}

var bootTimerRe = regexp.MustCompile(`hv: boot-timer: ([0-9.]+) µs since start`)

// BenchmarkVMMOverhead: exec to exit of the serial micro-guest, which
// writes the boot-timer port first, under hv and under QEMU microvm with
// KVM (the same guest code as a PVH ELF, leaving through isa-debug-exit
// right after its boot-timer write).
func BenchmarkVMMOverhead(b *testing.B) {
	testenv.RequireKVM(b)
	hv := testenv.Bin(b, "hv")
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	kernel := guest(b, "serial")
	pvh := testenv.Guest(b, "serial.pvh.elf")
	for i := 0; i < b.N; i++ {
		var hvExec, hvTimer, qExec []time.Duration
		for r := 0; r < benchRuns; r++ {
			d, out, code := timeExec(b, 30*time.Second, hv, "--kernel", kernel, "--memory", "64", "--vcpus", "1", "--console", "stdio")
			if code != 0 || !strings.Contains(out, "XTF RESULT serial PASS") {
				b.Fatalf("hv run: code %d\n%s", code, out)
			}
			hvExec = append(hvExec, d)
			m := bootTimerRe.FindStringSubmatch(out)
			if m == nil {
				b.Fatalf("no boot-timer line:\n%s", out)
			}
			us, _ := strconv.ParseFloat(m[1], 64)
			hvTimer = append(hvTimer, time.Duration(us*1e3))

			d, out, code = timeExec(b, 30*time.Second, qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults", "-no-user-config",
				"-display", "none", "-m", "64", "-serial", "null", "-kernel", pvh,
				"-device", "isa-debug-exit,iobase=0xf4,iosize=1")
			if code != 1 { // isa-debug-exit: (0 << 1) | 1
				b.Fatalf("qemu run: code %d (want 1 from isa-debug-exit)\n%s", code, out)
			}
			qExec = append(qExec, d)
		}
		b.ReportMetric(float64(median(hvExec).Microseconds()), "hv-exec-exit-µs")
		b.ReportMetric(float64(median(qExec).Microseconds()), "qemu-exec-exit-µs")
		b.ReportMetric(float64(median(hvTimer).Microseconds()), "hv-start-to-boot-timer-µs")
		fmt.Printf("\nVMM overhead, serial micro-guest, median of %d runs\n", benchRuns)
		fmt.Printf("%-44s %12s\n", "", "median")
		fmt.Printf("%-44s %10.2f ms\n", "hv: exec -> exit (incl. 2 lines + poweroff)", ms(median(hvExec)))
		fmt.Printf("%-44s %10.2f ms\n", "hv: main() -> boot-timer write", ms(median(hvTimer)))
		fmt.Printf("%-44s %10.2f ms\n", "QEMU microvm -accel kvm: exec -> exit", ms(median(qExec)))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkLinuxEarlyBoot: the Debian 6.1 cloud kernel to its "Memory:"
// line, hv (ELF decompressed in Go, startup_64) next to QEMU -accel kvm
// (bzImage, decompressed by the kernel's own code in the guest), same
// cmdline and initramfs, each bounded.
func BenchmarkLinuxEarlyBoot(b *testing.B) {
	testenv.RequireKVM(b)
	hv := testenv.Bin(b, "hv")
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	k := kerneltest.Kernel(b, kerneltest.Cloud56, kerneltest.Cloud56Version)
	initrd := writeInitramfs(b, []images.File{{Path: "init", Mode: 0o755, Data: []byte("#!/bin/sh\n")}})
	const cmdline = "console=ttyS0 earlyprintk=ttyS0"
	bound := 6 * time.Minute
	if s := os.Getenv("XENO_BENCH_LINUX_BOUND"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			bound = d
		}
	}
	for i := 0; i < b.N; i++ {
		hvT, hvWhy := timeToLine(b, bound, "Memory: ", hv, "--kernel", k.BzImagePath(), "--initrd", initrd,
			"--memory", "256", "--vcpus", "2", "--boot", "elf", "--cmdline", cmdline)
		// QEMU's default CPU model: -cpu host fails here (KVM refuses MSR 0x10a).
		qT, qWhy := timeToLine(b, bound, "Memory: ", qemu, "-M", "microvm,rtc=on", "-accel", "kvm",
			"-nodefaults", "-no-user-config", "-display", "none", "-m", "256", "-smp", "2",
			"-serial", "stdio", "-kernel", k.BzImagePath(), "-initrd", initrd, "-append", cmdline)
		fmt.Printf("\nLinux 6.1 cloud early boot to \"Memory:\", 2 vCPUs, 256 MiB\n")
		fmt.Printf("%-40s %s\n", "hv (ELF, startup_64)", fmtReach(hvT, hvWhy))
		fmt.Printf("%-40s %s\n", "QEMU microvm -accel kvm (bzImage)", fmtReach(qT, qWhy))
		if hvT > 0 {
			b.ReportMetric(hvT.Seconds(), "hv-to-Memory-s")
		}
		if qT > 0 {
			b.ReportMetric(qT.Seconds(), "qemu-to-Memory-s")
		}
	}
}

func fmtReach(d time.Duration, why string) string {
	if d < 0 {
		return "did not reach it: " + why
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// timeToLine runs a VMM until its console shows line, or bound passes;
// -1 and the reason (with the VMM's last words) if it never did.
func timeToLine(b *testing.B, bound time.Duration, line string, name string, args ...string) (time.Duration, string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr syncBuf
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	last := ""
	for sc.Scan() {
		if strings.Contains(sc.Text(), line) {
			return time.Since(start), ""
		}
		last = sc.Text()
	}
	if ctx.Err() != nil {
		return -1, fmt.Sprintf("not within %v (last console line %q)", bound, last)
	}
	errLines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	return -1, fmt.Sprintf("exited after %.1f s (last console line %q; stderr %q)",
		time.Since(start).Seconds(), last, errLines[len(errLines)-1])
}

// BenchmarkRSS: the hv's resident memory beyond guest RAM, with a guest
// idling (the power-button guest), next to QEMU's with the same guest:
// VmRSS minus the resident part of the guest-RAM mapping, from smaps.
func BenchmarkRSS(b *testing.B) {
	testenv.RequireKVM(b)
	hv := testenv.Bin(b, "hv")
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	pvh := testenv.Guest(b, "powerbutton.pvh.elf")
	const memMiB = 256
	for i := 0; i < b.N; i++ {
		hvRSS, hvGuest := rssBeyondGuest(b, memMiB, "XTF powerbutton waiting", hv, "--kernel", guest(b, "powerbutton"),
			"--memory", strconv.Itoa(memMiB))
		qRSS, qGuest := rssBeyondGuest(b, memMiB, "XTF powerbutton waiting", qemu, "-M", "microvm", "-accel", "kvm",
			"-nodefaults", "-no-user-config", "-display", "none", "-m", strconv.Itoa(memMiB), "-serial", "stdio", "-kernel", pvh)
		b.ReportMetric(float64(hvRSS)/1024, "hv-RSS-beyond-guest-MiB")
		b.ReportMetric(float64(qRSS)/1024, "qemu-RSS-beyond-guest-MiB")
		fmt.Printf("\nResident memory beyond guest RAM (%d MiB guest, idle micro-guest)\n", memMiB)
		fmt.Printf("%-28s %10s %16s\n", "", "beyond", "guest RAM touched")
		fmt.Printf("%-28s %7d KiB %12d KiB\n", "hv", hvRSS, hvGuest)
		fmt.Printf("%-28s %7d KiB %12d KiB\n", "QEMU microvm -accel kvm", qRSS, qGuest)
	}
}

// rssBeyondGuest starts a VMM, waits for its console to show ready, and
// returns VmRSS minus the RSS of the guest-RAM mapping (the anonymous
// mapping of exactly memMiB), both in KiB.
func rssBeyondGuest(b *testing.B, memMiB int, ready string, name string, args ...string) (beyond, guestRSS int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	found := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), ready) {
			found = true
			break
		}
	}
	if !found {
		b.Fatalf("%s never printed %q", name, ready)
	}
	time.Sleep(200 * time.Millisecond)
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	total, guest := 0, 0
	inGuest := false
	for _, l := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(l)
		if len(f) >= 1 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			var lo, hi uint64
			fmt.Sscanf(f[0], "%x-%x", &lo, &hi)
			inGuest = hi-lo == uint64(memMiB)<<20
			continue
		}
		if len(f) >= 2 && f[0] == "Rss:" {
			n, _ := strconv.Atoi(f[1])
			total += n
			if inGuest {
				guest += n
			}
		}
	}
	return total - guest, guest
}
