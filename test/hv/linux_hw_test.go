package hv_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// TestLinuxVirtioBlkAndSMP boots the Debian kernel to a busybox init that
// loads virtio_mmio and virtio_blk (modules in the 6.1 cloud kernel; the
// device is announced in the hv's DSDT), reports the CPUs it sees, reads
// sector 0 of the disk, writes sector 1, and powers off. The host checks
// the file afterwards. It needs hardware KVM: on kvm_pvm Linux does not
// reach init in useful time (docs/kvm-notes.md).
func TestLinuxVirtioBlkAndSMP(t *testing.T) {
	testenv.RequireHardwareKVM(t)
	testenv.Bin(t, "hv")
	k := kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version)
	mods, err := k.ModuleClosure([]string{"virtio_mmio", "virtio_blk"})
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testenv.RequireCmd(t, "busybox")
		t.Fatal(err)
	}
	entries := []images.File{
		{Path: "bin/busybox", Mode: 0o755, Data: bb},
		{Path: "dev", Mode: fs.ModeDir | 0o755},
		{Path: "proc", Mode: fs.ModeDir | 0o755},
		{Path: "sys", Mode: fs.ModeDir | 0o755},
	}
	script := "#!/bin/busybox sh\nB=/bin/busybox\n$B mount -t devtmpfs dev /dev\n$B mount -t proc proc /proc\n$B mount -t sysfs sys /sys\n"
	for i, m := range mods {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("mods/%02d-%s", i, filepath.Base(m))
		entries = append(entries, images.File{Path: name, Mode: 0o644, Data: b})
		script += "$B insmod /" + name + "\n"
	}
	script += `$B echo "XENO-CPUS $($B cat /sys/devices/system/cpu/online)"
i=0; while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do $B sleep 0.1; i=$((i+1)); done
$B echo "XENO-READ $($B dd if=/dev/vda bs=16 count=1 2>/dev/null)"
$B printf 'written-by-linux' | $B dd of=/dev/vda bs=512 seek=1 conv=notrunc,fsync 2>/dev/null
$B sync
$B echo XENO-INIT-REACHED
$B poweroff -f
`
	entries = append(entries, images.File{Path: "init", Mode: 0o755, Data: []byte(script)})
	disk := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, 1<<20)
	copy(img, "sector0-from-host")
	if err := os.WriteFile(disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runHVLong(t, 120*time.Second, "--kernel", k.BzImagePath(), "--initrd", writeInitramfs(t, entries),
		"--memory", "256", "--vcpus", "2", "--disk", disk, "--cmdline", "console=ttyS0 panic=-1")
	expectEnd(t, r, control.ReasonPoweroff)
	for _, want := range []string{"XENO-CPUS 0-1", "XENO-READ sector0-from-hos", "XENO-INIT-REACHED"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("console lacks %q:\n%s", want, r.stdout)
		}
	}
	got, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got[512:], []byte("written-by-linux")) {
		t.Errorf("sector 1 of the host file is %q, want the guest's write", got[512:528])
	}
}
