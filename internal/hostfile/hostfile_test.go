package hostfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/testenv"
	"golang.org/x/sys/unix"
)

func special(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return map[string]string{
		"/dev/zero":      "a character device",
		"/dev/null":      "a character device",
		fifo:             "a FIFO",
		sock:             "a socket",
		dir:              "a directory",
		"/proc/self/mem": "on proc",
		"/proc/kcore":    "on proc",
		"/sys/kernel/mm/transparent_hugepage/enabled": "on sysfs",
	}
}

func TestReadRegularRefusesSpecialFiles(t *testing.T) {
	for path, what := range special(t) {
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s: %v: skipped", path, err)
			continue
		}
		err := testenv.Within(t, 5*time.Second, func() error { _, err := ReadRegular(path, MaxKernel); return err })
		if err == nil || !strings.Contains(err.Error(), path+": "+what) {
			t.Errorf("%s: %v, want %q", path, err, what)
		}
		if !errors.Is(err, ErrNotRegular) && !errors.Is(err, ErrPseudo) && !errors.Is(err, os.ErrPermission) {
			t.Errorf("%s: %v is neither ErrNotRegular nor ErrPseudo", path, err)
		}
	}
}

func TestOpenDiskRefusesSpecialFiles(t *testing.T) {
	for path, what := range special(t) {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		for _, ro := range []bool{true, false} {
			err := testenv.Within(t, 5*time.Second, func() error {
				f, err := OpenDisk(path, ro)
				if f != nil {
					f.Close()
				}
				return err
			})
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("%s (ro %v): %v, want a refusal (%s)", path, ro, err, what)
				continue
			}
			if !errors.Is(err, ErrNotDisk) && !errors.Is(err, ErrPseudo) && !errors.Is(err, os.ErrPermission) {
				t.Errorf("%s (ro %v): %v", path, ro, err)
			}
		}
	}
}

func TestOpenDiskTakesFilesAndBlockDevices(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenDisk(p, false)
	if err != nil {
		t.Fatal(err)
	}
	// The fd must be blocking again: the block device reads with pread
	// and expects no EAGAIN.
	if fl, _ := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); fl&unix.O_NONBLOCK != 0 || fl&unix.O_ACCMODE != unix.O_RDWR {
		t.Errorf("flags %#o: want O_RDWR without O_NONBLOCK", fl)
	}
	f.Close()
	for _, b := range []string{"/dev/loop0", "/dev/sda", "/dev/vda"} {
		var st unix.Stat_t
		if unix.Stat(b, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			continue
		}
		f, err := OpenDisk(b, true)
		if err != nil && !errors.Is(err, os.ErrPermission) {
			t.Errorf("block device %s: %v", b, err)
		} else if f != nil {
			f.Close()
		}
		return
	}
	t.Log("no block device to open here")
}

// A sparse file far over the cap is refused from its size alone: fast,
// and without allocating its size.
func TestReadRegularRefusesBigBeforeReading(t *testing.T) {
	p := filepath.Join(t.TempDir(), "initrd")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err = ReadRegular(p, 32<<20)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p+": 4294967296 bytes, over the limit of 32 MiB") {
		t.Fatalf("%v, want the size refusal", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes before refusing", alloc)
	}
	if took > time.Second {
		t.Errorf("took %v to refuse", took)
	}
}

func TestReadRegular(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(p, []byte("kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Through a symlink too: /boot/vmlinuz is one.
	l := p + ".link"
	if err := os.Symlink(p, l); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{p, l} {
		b, err := ReadRegular(q, 6)
		if err != nil || string(b) != "kernel" {
			t.Errorf("%s: %q, %v", q, b, err)
		}
	}
	if _, err := ReadRegular(p, 5); !errors.Is(err, ErrTooLarge) {
		t.Errorf("limit 5: %v", err)
	}
	if _, err := ReadRegular(p+".missing", 5); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v, want os.ErrNotExist", err)
	}
}

func TestParseMem(t *testing.T) {
	m, err := ParseMem(strings.NewReader("MemTotal:       24683520 kB\nMemFree:        22903296 kB\nMemAvailable:   23965696 kB\n"))
	if err != nil || m != (Mem{TotalMiB: 24105, AvailableMiB: 23404}) {
		t.Errorf("%+v, %v", m, err)
	}
	if _, err := ParseMem(strings.NewReader("MemFree: 1 kB\n")); err == nil {
		t.Error("no MemTotal: no error")
	}
	if m, err := ReadMem(); err != nil || m.TotalMiB <= 0 || m.AvailableMiB <= 0 {
		t.Errorf("this host: %+v, %v", m, err)
	}
}
