package hv_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// benchNetInit is the guest of BenchmarkVirtioNetPeers: eth0 at 10.0.0.2,
// a sink (9), an 8 MB source (10), and poweroff on a connection to 99.
const benchNetInit = `mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
ip link set lo up
ip addr add 10.0.0.2/24 dev eth0 && ip link set eth0 up
printf '#!/bin/sh\ncat >/dev/null\n' > /bin/sink
printf '#!/bin/sh\nhead -c 8000000 /dev/zero\n' > /bin/source
chmod 755 /bin/sink /bin/source
nc -ll -p 9 -e /bin/sink &
nc -ll -p 10 -e /bin/source &
echo "GUEST-NET-UP $(cat /sys/class/net/eth0/address)"
nc -l -p 99 </dev/null
poweroff -f
`

// benchNetMeasure, sourced by the scripts below in a network namespace
// with the tap xn0 at 10.0.0.1: measure NAME CMD... starts a VMM, waits
// for the guest, and prints the mean ping round trip and the time of 8 MB
// each way over TCP.
const benchNetMeasure = `now() { cut -d' ' -f1 /proc/uptime; }
el() { awk "BEGIN { printf \"%.3f\", $2 - $1 }"; }
head -c 8000000 /dev/zero > /tmp/8m
measure() {
	name=$1; shift
	"$@" > /tmp/$name.out 2>&1 & p=$!
	i=0
	until grep -q GUEST-NET-UP /tmp/$name.out; do
		i=$((i+1)); if [ $i -gt 600 ] || ! kill -0 $p 2>/dev/null; then echo "BENCH-FAIL $name"; tail -30 /tmp/$name.out; kill $p; return; fi
		sleep 1
	done
	ping -c 3 -W 10 10.0.0.2 >/dev/null
	echo "BENCH $name lat $(ping -c 20 -i 0.2 10.0.0.2 | awk -F/ '/round-trip|rtt/ { print $4 }')"
	t0=$(now); nc 10.0.0.2 9 < /tmp/8m; t1=$(now); echo "BENCH $name rx $(el $t0 $t1)"
	t0=$(now); nc 10.0.0.2 10 < /dev/null > /tmp/o; t1=$(now)
	[ "$(wc -c < /tmp/o)" -eq 8000000 ] && echo "BENCH $name tx $(el $t0 $t1)"
	nc 10.0.0.2 99 < /dev/null
	sleep 2; kill $p 2>/dev/null; wait $p
}
mktap() {
	if command -v tunctl >/dev/null 2>&1; then tunctl -t "$1" >/dev/null; else ip tuntap add dev "$1" mode tap vnet_hdr; fi
}
ip link set lo up
mktap xn0
ip addr add 10.0.0.1/24 dev xn0 && ip link set xn0 up
CL="console=ttyS0 panic=-1 $GUEST_EXTRA"
MAC=00:16:3e:00:00:20
`

// benchNetLab runs hv and QEMU with KVM, both on the lab's KVM.
const benchNetLab = `cat > /tmp/bench.sh <<'EOF'
` + benchNetMeasure + `
measure hv hv --kernel $G/kernel --initrd $G/initrd --cmdline "$CL" --memory 256 --vcpus 1 --net tap=xn0,mac=$MAC
measure qemu-kvm $QEMU_BIN -accel kvm -M microvm -cpu host -smp 1 -m 256 -nodefaults -no-user-config -display none \
	-serial stdio -monitor none -no-reboot -kernel $G/kernel -initrd $G/initrd -append "$CL" \
	-netdev tap,id=n0,ifname=xn0,script=no,downscript=no,vhost=off -device virtio-net-device,netdev=n0,mac=$MAC
echo BENCH-DONE
EOF
unshare -n sh /tmp/bench.sh
`

// BenchmarkVirtioNetPeers: guest↔host TCP throughput each way and ping
// latency over the hv's virtio-net and over QEMU's (virtio-net-device on
// microvm's virtio-mmio, vhost off), with the same xeno kernel and
// initramfs on a tap in a network namespace: hv and QEMU -accel kvm on
// the KVM at hand (the nested lab's here), and QEMU -accel tcg on this
// machine (docs/benchmarks.md).
func BenchmarkVirtioNetPeers(b *testing.B) {
	why := kvmlab.Need(b)
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	k := kerneltest.Xeno(b, "")
	initrd := kvmlab.BusyboxInitramfs(b, benchNetInit)
	files := kvmlab.QEMUFiles(b)
	files["kernel"] = k.BzImagePath()
	files["initrd"] = initrd
	var rows []string
	for i := 0; i < b.N; i++ {
		out, code := kvmlab.Script(b, why, files, "export QEMU_BIN="+qemu+"\n"+benchNetLab)
		if code != 0 || !strings.Contains(out, "BENCH-DONE") {
			b.Fatalf("exit %d:\n%s", code, out)
		}
		rows = append(rows, benchLines(out)...)
		rows = append(rows, qemuTCGNet(b, qemu, k.BzImagePath(), initrd)...)
	}
	where := "/dev/kvm"
	if why != "" {
		where = "the nested lab's KVM (kvm-amd on QEMU TCG's AMD-V)"
	}
	fmt.Printf("\nvirtio-net, xeno kernel %s, 1 vCPU, 256 MiB, tap, 8 MB over TCP each way, ping mean of 20\n", k.Release)
	fmt.Printf("hv and QEMU -accel kvm on %s; QEMU -accel tcg on this machine\n", where)
	fmt.Printf("  %-10s %-5s %s\n", "vmm", "what", "value")
	for _, r := range rows {
		f := strings.Fields(r)
		if len(f) != 4 {
			continue
		}
		v, err := strconv.ParseFloat(f[3], 64)
		if err != nil {
			continue
		}
		switch f[2] {
		case "lat":
			fmt.Printf("  %-10s %-5s %8.2f ms round trip\n", f[1], f[2], v)
			b.ReportMetric(v, f[1]+"-lat-ms")
		case "rx", "tx":
			fmt.Printf("  %-10s %-5s %8.2f MB/s (%.2f s)\n", f[1], f[2], 8/v, v)
			b.ReportMetric(8/v, f[1]+"-"+f[2]+"-MB/s")
		}
	}
}

func benchLines(out string) []string {
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "BENCH ") || strings.HasPrefix(l, "BENCH-FAIL") {
			rows = append(rows, l)
		}
	}
	return rows
}

// qemuTCGNet runs the same measurement under QEMU TCG on this machine,
// in a network namespace, with busybox's nc and ping.
func qemuTCGNet(b *testing.B, qemu, kernel, initrd string) []string {
	if os.Getuid() != 0 {
		b.Log("QEMU TCG row skipped: a tap needs root")
		return nil
	}
	bb, err := kvmlab.Busybox(kerneltest.MinimalRecipe())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.WriteFile(filepath.Join(bin, "busybox"), bb, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, a := range []string{"nc", "ping", "tunctl", "usleep"} {
		os.Symlink("busybox", filepath.Join(bin, a))
	}
	extra, err := kvmlab.GuestCmdline()
	if err != nil {
		b.Fatal(err)
	}
	script := benchNetMeasure + `measure qemu-tcg ` + qemu + ` -accel tcg -M microvm -cpu max -smp 1 -m 256 -nodefaults -no-user-config -display none \
	-serial stdio -monitor none -no-reboot -kernel ` + kernel + ` -initrd ` + initrd + ` -append "$CL" \
	-netdev tap,id=n0,ifname=xn0,script=no,downscript=no,vhost=off -device virtio-net-device,netdev=n0,mac=$MAC
`
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "GUEST_EXTRA="+extra)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Logf("QEMU TCG: %v\n%s", err, out)
	}
	return benchLines(string(out))
}
