package hv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// blkInit mounts the virtio disk: it reads the host's file and writes one
// of its own, or, on a read-only disk, must be refused the write.
const blkInit = `mkdir -p /proc /sys /dev /mnt
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
ro=$(cat /sys/block/vda/ro)
echo "DISK ro=$ro"
mount -t ext4 /dev/vda /mnt || echo MOUNT-FAILED
echo "READ: $(cat /mnt/hello.txt)"
if [ "$ro" = 0 ]; then
	echo "written by the guest" > /mnt/new.txt && sync && echo WROTE
	umount /mnt
elif echo x > /mnt/new.txt; then
	echo RO-WRITE-SUCCEEDED
else
	echo RO-WRITE-REFUSED
fi
poweroff -f
`

// blkScript boots the guest on the disk rw, then on a copy ro, then reads
// the disk back as the host: with debugfs where it runs on this machine,
// with the lab kernel's own ext4 over a loop device in the lab.
const blkScript = `mkdir -p "$XENO_STATE_DIR"
ro="$XENO_STATE_DIR/ro.img"
cp "$G/disk.img" "$ro"
hv --kernel "$G/kernel" --initrd "$G/initrd" --memory 256 --vcpus 1 --disk "$G/disk.img" --cmdline "console=ttyS0 panic=-1 $GUEST_EXTRA" 2>&1
echo "HV-EXIT $?"
hv --kernel "$G/kernel" --initrd "$G/initrd" --memory 256 --vcpus 1 --disk "$ro,ro" --cmdline "console=ttyS0 panic=-1 $GUEST_EXTRA" 2>&1
echo "HV-RO-EXIT $?"
if command -v debugfs >/dev/null 2>&1; then
	echo "HOST-READ: $(debugfs -R 'cat /new.txt' "$G/disk.img" 2>/dev/null)"
	echo "HOST-RO-READ: $(debugfs -R 'cat /new.txt' "$ro" 2>/dev/null)"
else
	mkdir -p "$XENO_STATE_DIR/m" "$XENO_STATE_DIR/r"
	mount -o loop,ro "$G/disk.img" "$XENO_STATE_DIR/m" && echo "HOST-READ: $(cat "$XENO_STATE_DIR/m/new.txt")"
	mount -o loop,ro "$ro" "$XENO_STATE_DIR/r" && echo "HOST-RO-READ: $(cat "$XENO_STATE_DIR/r/new.txt" 2>/dev/null)"
fi
`

// TestXenoVirtioBlk gives the xeno kernel an ext4 image made on the host
// (mkfs.ext4 -d) as a virtio-mmio disk: the guest reads the host's file,
// writes one, syncs and powers off, and the host then finds that file in
// the image; on the same image read-only, the guest's write is refused
// and nothing reaches the image.
func TestXenoVirtioBlk(t *testing.T) {
	why := kvmlab.Need(t)
	mkfs := testenv.RequireCmd(t, "mkfs.ext4")
	k := kerneltest.Xeno(t, "")
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	os.MkdirAll(content, 0o755)
	os.WriteFile(filepath.Join(content, "hello.txt"), []byte("made on the host\n"), 0o644)
	img := filepath.Join(dir, "disk.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", content, "-E", "root_owner=0:0", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	files := map[string]string{"kernel": k.BzImagePath(), "initrd": kvmlab.BusyboxInitramfs(t, blkInit), "disk.img": img}
	out, code := kvmlab.Script(t, why, files, blkScript)
	for _, want := range []string{
		"DISK ro=0", "READ: made on the host", "WROTE", "HV-EXIT 0",
		"DISK ro=1", "RO-WRITE-REFUSED", "HV-RO-EXIT 0",
		"HOST-READ: written by the guest",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q", want)
		}
	}
	if strings.Contains(out, "MOUNT-FAILED") || strings.Contains(out, "RO-WRITE-SUCCEEDED") || strings.Contains(out, "HOST-RO-READ: written") {
		t.Errorf("a mount failed, or the read-only disk took a write")
	}
	if t.Failed() || code != 0 {
		t.Logf("exit %d, output:\n%s", code, out)
	}
}
