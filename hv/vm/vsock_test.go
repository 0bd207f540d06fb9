package vm

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/virtio"
)

// vsockVM is a VM without KVM, with disks and a vsock device on its
// buses and RAM behind them.
func vsockVM(t *testing.T, disks int, uds string) (*VM, error) {
	t.Helper()
	v := &VM{done: make(chan struct{}), started: time.Now()}
	v.cond = sync.NewCond(&v.mu)
	v.cfg = Config{Console: io.Discard, Log: io.Discard, Vsock: &Vsock{CID: 9, UDS: uds}}
	for i := 0; i < disks; i++ {
		p := filepath.Join(t.TempDir(), "d.img")
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		v.cfg.Disks = append(v.cfg.Disks, Disk{Path: p})
	}
	v.unk.log = io.Discard
	mem, err := NewMemory(abi.MinMemoryMiB << 20)
	if err != nil {
		t.Fatal(err)
	}
	v.mem = mem
	t.Cleanup(func() { v.dev.close(); mem.Close() })
	return v, v.addDevices(func(uint32) func(bool) { return func(bool) {} })
}

// TestVsockAfterDisks: the vsock device takes the window after the
// disks, answers as device 19 with its CID, replaces a stale socket,
// and counts against the virtio device limit.
func TestVsockAfterDisks(t *testing.T) {
	dir, err := os.MkdirTemp("", "vmvs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	uds := filepath.Join(dir, "v.sock")
	// A stale socket from a dead hv: nobody accepts on it.
	stale, err := net.Listen("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	v, err := vsockVM(t, 2, uds)
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	v.dev.mmio.Read(virtioAddr(2)+virtio.RegDeviceID, b[:4])
	if id := binary.LittleEndian.Uint32(b[:4]); id != virtio.DeviceIDVsock {
		t.Fatalf("device after two disks has ID %d, want %d", id, virtio.DeviceIDVsock)
	}
	v.dev.mmio.Read(virtioAddr(2)+virtio.RegConfig, b[:])
	if cid := binary.LittleEndian.Uint64(b[:]); cid != 9 {
		t.Errorf("guest_cid %d", cid)
	}
	if st, err := os.Stat(uds); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("vsock socket: %v, %v; want mode 0600", st, err)
	}
	v.dev.close()
	v.dev.vsock = nil
	if _, err := os.Stat(uds); !os.IsNotExist(err) {
		t.Errorf("socket left after close: %v", err)
	}

	if _, err := vsockVM(t, maxVirtio, uds); err == nil || !strings.Contains(err.Error(), "virtio devices") {
		t.Errorf("%d disks and a vsock: %v", maxVirtio, err)
	}
}
