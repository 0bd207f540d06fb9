package kernel_test

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

const marker = "XENO-USER-SPACE-UP"

// peersScript measures, on the KVM at hand (/dev/kvm, or the nested lab's),
// with the same kernel, initramfs and command line, 1 vCPU and 256 MiB:
// start to the user-space marker under hv run directly, under QEMU
// -accel kvm -M microvm, and through xl create; then the resident memory
// of hv and of QEMU each running that Linux idle. Times come from
// /proc/uptime (10 ms) and a 20 ms poll of the console; both sides pay
// the same poll.
const peersScript = `set -u
now() { cut -d' ' -f1 /proc/uptime; }
el() { awk "BEGIN { printf \"%.2f\", $2 - $1 }"; }
CL="console=ttyS0 panic=-1 $GUEST_EXTRA"
QEMU="$QEMU_BIN -accel kvm -M microvm -cpu host -smp 1 -m 256 -nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot"
tomarker() {
	i=0
	while ! grep -q ` + marker + ` "$1" 2>/dev/null; do
		usleep 20000; i=$((i+1))
		[ $i -gt 6000 ] && { echo "no marker in $1:"; tail -30 "$1"; exit 1; }
	done
}
n=0
while [ $n -lt $ROUNDS ]; do
	n=$((n+1))
	t0=$(now); hv --kernel $G/kernel --initrd $G/marker.cpio --cmdline "$CL" --memory 256 --vcpus 1 >/tmp/hv.out 2>&1 & p=$!
	tomarker /tmp/hv.out; t1=$(now); wait $p
	echo "BENCH hv $(el $t0 $t1)"

	t0=$(now); $QEMU -kernel $G/kernel -initrd $G/marker.cpio -append "$CL" >/tmp/q.out 2>&1 & p=$!
	tomarker /tmp/q.out; t1=$(now); kill $p; wait $p
	echo "BENCH qemu-kvm $(el $t0 $t1)"

	# preserve: the guest powers off right after the marker, and a
	# destroyed domain's console.log goes with its record.
	printf 'name = "m%s"\nkernel = "%s"\nramdisk = "%s"\ncmdline = "%s"\nmemory = 256\nvcpus = 1\non_poweroff = "preserve"\n' \
		$n $G/kernel $G/marker.cpio "$CL" >/tmp/m.cfg
	t0=$(now); xl create /tmp/m.cfg >/dev/null || exit 1
	tomarker $XENO_STATE_DIR/domains/$(xl domid m$n)/hv/console.log; t1=$(now)
	echo "BENCH xl $(el $t0 $t1)"
	xl destroy m$n 2>/dev/null
done

hv --kernel $G/kernel --initrd $G/idle.cpio --cmdline "$CL" --memory 256 --vcpus 1 >/tmp/hv.out 2>&1 & p=$!
tomarker /tmp/hv.out; sleep 1
echo "BENCH hv-rss $(awk '/VmRSS/ { print $2 }' /proc/$p/status)"
kill $p; wait $p
$QEMU -kernel $G/kernel -initrd $G/idle.cpio -append "$CL" >/tmp/q.out 2>&1 & p=$!
tomarker /tmp/q.out; sleep 1
echo "BENCH qemu-rss $(awk '/VmRSS/ { print $2 }' /proc/$p/status)"
kill $p; wait $p
echo BENCH-DONE
`

// BenchmarkXenoLinuxPeers is the xeno kernel booted to a busybox marker
// under hv, under QEMU with KVM, through xl, and under QEMU TCG on this
// machine, with the RSS of hv and QEMU running it; one run, the same
// kernel, initramfs and command line for all (docs/benchmarks.md).
func BenchmarkXenoLinuxPeers(b *testing.B) {
	why := kvmlab.Need(b)
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	k := kerneltest.Xeno(b, "")
	files := kvmlab.QEMUFiles(b)
	files["kernel"] = k.BzImagePath()
	files["marker.cpio"] = kvmlab.BusyboxInitramfs(b, "echo "+marker+"\npoweroff -f\n")
	files["idle.cpio"] = kvmlab.BusyboxInitramfs(b, "echo "+marker+"\nexec sleep 3600\n")
	script := fmt.Sprintf("export ROUNDS=%d QEMU_BIN=%s\n%s", b.N, qemu, peersScript)
	out, code := kvmlab.Script(b, why, files, script)
	if code != 0 || !strings.Contains(out, "BENCH-DONE") {
		b.Fatalf("exit %d:\n%s", code, out)
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "BENCH" {
			v, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				b.Fatalf("%q: %v", line, err)
			}
			sums[f[1]] += v
		}
	}
	// The lab's guest command line here too, so that all four boot the
	// same command line; without tsc_early_khz a microvm under TCG now and
	// then hangs, unable to calibrate its TSC (it has no PIT or HPET).
	extra, err := kvmlab.GuestCmdline()
	if err != nil {
		b.Fatal(err)
	}
	var tcg float64
	for i := 0; i < b.N; i++ {
		tcg += qemuTCGToMarker(b, qemu, k.BzImagePath(), files["marker.cpio"], "console=ttyS0 panic=-1 "+extra)
	}
	n := float64(b.N)
	where := "/dev/kvm"
	if why != "" {
		where = "the nested lab's KVM (kvm-amd on QEMU TCG's AMD-V)"
	}
	fmt.Printf("\nxeno kernel %s, 1 vCPU, 256 MiB, start to the busybox marker (mean of %d), on %s\n", k.Release, b.N, where)
	for _, r := range []struct{ key, what string }{
		{"hv", "hv --kernel --initrd"},
		{"qemu-kvm", "QEMU -accel kvm -M microvm, same kernel and initramfs"},
		{"xl", "xl create (toolstack checks, monitor, hv), to the marker in console.log"},
	} {
		fmt.Printf("  %-74s %7.2f s\n", r.what, sums[r.key]/n)
		b.ReportMetric(sums[r.key]/n, r.key+"-s")
	}
	fmt.Printf("  %-74s %7.2f s\n", "QEMU -accel tcg -M microvm on this machine (no nested KVM)", tcg/n)
	b.ReportMetric(tcg/n, "qemu-tcg-s")
	fmt.Printf("resident memory with that Linux running idle: hv %.1f MiB, QEMU -accel kvm -M microvm %.1f MiB\n",
		sums["hv-rss"]/1024, sums["qemu-rss"]/1024)
	b.ReportMetric(sums["hv-rss"]/1024, "hv-rss-MiB")
	b.ReportMetric(sums["qemu-rss"]/1024, "qemu-rss-MiB")
}

// qemuTCGToMarker runs QEMU TCG on this machine until the marker.
func qemuTCGToMarker(b *testing.B, qemu, kernel, initrd, cmdline string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-M", "microvm", "-cpu", "max", "-smp", "1", "-m", "256",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var seen []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.Contains(sc.Text(), marker) {
			return time.Since(start).Seconds()
		}
		seen = append(seen, sc.Text())
	}
	b.Fatalf("QEMU TCG: no %s; console:\n%s", marker, strings.Join(seen, "\n"))
	return 0
}
