package virtio

import (
	"encoding/binary"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestTapFromFDRefusesOtherFiles(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := TapFromFD(int(r.Fd())); err == nil || !strings.Contains(err.Error(), "not a tap") {
		t.Fatalf("a pipe was taken for a tap: %v", err)
	}
}

// TestTapFileReal opens a real tap in a network namespace of its own
// (root only): the hv's flags and header size, offloads, a frame the
// kernel sends when the link comes up (IPv6 neighbour discovery or MLD)
// read with its 12-byte header, and a frame written that the kernel
// counts as received.
func TestTapFileReal(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("skipping: a tap needs root (CAP_NET_ADMIN)")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipping: no ip command")
	}
	// The namespace belongs to this thread, which dies with the test's
	// goroutine (no UnlockOSThread), so no other test runs in it.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("skipping: no network namespace: %v", err)
	}
	tap, err := OpenTap("xntest0")
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	defer tap.Close()
	if tap.Name() != "xntest0" {
		t.Errorf("name %q", tap.Name())
	}
	n, err := NewNet(tap, NetConfig{MAC: testMAC})
	if err != nil {
		t.Fatal(err)
	}
	if n.Features()&netOffloads != netOffloads {
		t.Errorf("a real tap's offloads not offered: features %#x", n.Features())
	}
	// exec from this locked thread: the child shares its namespace.
	if out, err := exec.Command(ip, "link", "set", "xntest0", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set up: %v: %s", err, out)
	}
	buf := make([]byte, NetHdrLen+MaxFrame)
	got := make(chan int, 1)
	go func() {
		m, err := tap.Read(buf)
		if err != nil {
			m = -1
		}
		got <- m
	}()
	select {
	case m := <-got:
		if m < NetHdrLen+ethHdrLen {
			t.Errorf("read %d bytes from the tap", m)
		} else if et := binary.BigEndian.Uint16(buf[NetHdrLen+12:]); et != 0x86dd {
			t.Logf("first frame has ethertype %#x", et)
		}
	case <-time.After(5 * time.Second):
		t.Log("the kernel sent nothing within 5 s (IPv6 off?): read not checked")
	}
	// This thread's namespace: /sys and /proc/self/net show another.
	stat := func() int {
		b, _ := os.ReadFile("/proc/thread-self/net/dev")
		for _, l := range strings.Split(string(b), "\n") {
			if name, rest, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && name == "xntest0" {
				if f := strings.Fields(rest); len(f) > 1 {
					v, _ := strconv.Atoi(f[1])
					return v
				}
			}
		}
		return -1
	}
	before := stat()
	// A broadcast ARP request from the guest's MAC, header and frame in
	// separate buffers as from a chain.
	f := make([]byte, 42)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], testMAC)
	copy(f[12:], []byte{0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1})
	if wn, err := tap.Writev([][]byte{make([]byte, NetHdrLen), f[:20], f[20:]}); err != nil || wn != NetHdrLen+len(f) {
		t.Fatalf("writev: %d, %v", wn, err)
	}
	if after := stat(); after != before+1 {
		t.Errorf("the kernel received %d frames, want 1", after-before)
	}
}
