package virtio

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBlockStateRoundTrip saves a block transport with requests already
// served and restores it onto a fresh transport over a copy of guest
// RAM: the next request goes on in the same rings, at the next index.
func TestBlockStateRoundTrip(t *testing.T) {
	r := newRig(t, 8, false)
	r.initDriver(FeatureVersion1)
	for i := 0; i < 3; i++ {
		r.request(0, BlkTIn, uint64(i), bufAt+0x1000, SectorSize, true)
		r.submit(0)
	}
	r.w32(RegInterruptACK, InterruptUsedRing)
	b, err := r.dev.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(r.file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blk, err := NewBlock(f, false)
	if err != nil {
		t.Fatal(err)
	}
	r2 := newTransportRig(t, blk, r.file)
	copy(r2.mem, r.mem)
	r2.avail = r.avail
	if err := r2.dev.RestoreState(b); err != nil {
		t.Fatal(err)
	}
	if r2.r32(RegStatus)&StatusDriverOK == 0 || r2.r32(RegQueueReady) != 1 || r2.r32(RegQueueNum) != testQueue {
		t.Fatalf("restored transport: status %#x ready %d num %d", r2.r32(RegStatus), r2.r32(RegQueueReady), r2.r32(RegQueueNum))
	}
	st := r2.request(0, BlkTIn, 5, bufAt+0x1000, SectorSize, true)
	r2.submit(0)
	if got := r2.usedIdx(); got != 4 {
		t.Errorf("used index after the restored request: %d, want 4 (no request lost or repeated)", got)
	}
	if r2.mem[st] != BlkSOK || r2.mem[bufAt+0x1000] != 5 {
		t.Errorf("restored request: status %d, data %d, want 0 and sector 5", r2.mem[st], r2.mem[bufAt+0x1000])
	}
	if !r2.irq {
		t.Error("no interrupt for the restored request")
	}
}

// TestMMIOStateHostile restores blobs a bent snapshot could hold: each
// is refused with its reason and leaves the transport as it was.
func TestMMIOStateHostile(t *testing.T) {
	r := newRig(t, 8, false)
	r.initDriver(FeatureVersion1)
	good, err := r.dev.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	q := `"queues":[{"num":%N%,"ready":true,"desc":%D%,"driver":12288,"device":16384}]`
	blob := func(dev, status, feat, queue string) string {
		return `{"version":1,"device_id":` + dev + `,"status":` + status + `,"drv_features":` + feat + `,` + queue + `}`
	}
	okq := strings.NewReplacer("%N%", "16", "%D%", "4096").Replace(q)
	for _, c := range []struct{ name, in, want string }{
		{"other device", blob("1", "15", "4294967296", okq), "device type 1"},
		{"queue too big", blob("2", "15", "4294967296", strings.NewReplacer("%N%", "512", "%D%", "4096").Replace(q)), "at most 256"},
		{"queue not a power of two", blob("2", "15", "4294967296", strings.NewReplacer("%N%", "12", "%D%", "4096").Replace(q)), "not a valid queue"},
		{"ring outside RAM", blob("2", "15", "4294967296", strings.NewReplacer("%N%", "16", "%D%", "1099511627776").Replace(q)), "not a valid queue"},
		{"ring wraps", blob("2", "15", "4294967296", strings.NewReplacer("%N%", "16", "%D%", "18446744073709551600").Replace(q)), "not a valid queue"},
		{"two queues", blob("2", "15", "4294967296", `"queues":[{},{}]`), "2 queues"},
		{"no queues", blob("2", "15", "4294967296", `"queues":[]`), "0 queues"},
		{"features not offered", blob("2", "15", "18446744073709551615", okq), "does not offer"},
		{"no VERSION_1", blob("2", "15", "0", okq), "VERSION_1"},
		{"status", blob("2", "256", "4294967296", okq), "status"},
		{"version", `{"version":2}`, "version 2"},
		{"garbage", `{"version":1,"queues":7}`, "cannot unmarshal"},
	} {
		err := r.dev.RestoreState([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
	after, _ := r.dev.SaveState()
	if string(after) != string(good) {
		t.Errorf("refused states changed the transport:\n%s\nwas\n%s", after, good)
	}
}

// TestVsockRestoreSendsTransportReset checks that a restored vsock
// device tells the driver its connections are gone: one
// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue, once.
func TestVsockRestoreSendsTransportReset(t *testing.T) {
	r := newVsockRig(t)
	// The driver's event buffer, as Linux posts them at probe.
	r.locked(func() {
		r.setDesc(vsockEvent, 0, 0x1f0000, 4, descFWrite, 0)
		binary.LittleEndian.PutUint32(r.mem[0x1f0000:], 0xffffffff)
		r.offer(vsockEvent, 0)
	})
	b, err := r.dev.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vsk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	uds := filepath.Join(dir, "v.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: uds, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := NewVsock(r.cid, uds, ln)
	if err != nil {
		t.Fatal(err)
	}
	defer vs.Close()
	mem := make(ram, len(r.mem))
	copy(mem, r.mem)
	var level bool
	dev, err := NewMMIO(mem, vs, func(l bool) { level = l })
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.RestoreState(b); err != nil {
		t.Fatal(err)
	}
	used := mem[vqUsed(vsockEvent):]
	if idx := binary.LittleEndian.Uint16(used[2:]); idx != 1 {
		t.Fatalf("event queue used index %d, want 1", idx)
	}
	if id, n := binary.LittleEndian.Uint32(mem[0x1f0000:]), binary.LittleEndian.Uint32(used[8:]); id != VsockEventTransportReset || n != 4 {
		t.Errorf("event id %d len %d, want TRANSPORT_RESET (0) and 4", id, n)
	}
	if !level {
		t.Error("no interrupt for the event")
	}
	// A notify later sends no second event.
	var nb [4]byte
	binary.LittleEndian.PutUint32(nb[:], vsockRX)
	dev.Write(RegQueueNotify, nb[:])
	if idx := binary.LittleEndian.Uint16(used[2:]); idx != 1 {
		t.Errorf("event queue used index %d after a notify, want still 1", idx)
	}
}

// TestFreezeStopsRun checks that a frozen transport runs nothing for its
// device's goroutines until thawed.
func TestFreezeStopsRun(t *testing.T) {
	r := newVsockRig(t)
	r.dev.Freeze()
	ran := false
	r.dev.Run(func(*Queues) error { ran = true; return nil })
	if ran {
		t.Fatal("Run ran on a frozen transport")
	}
	r.dev.Thaw()
	r.dev.Run(func(*Queues) error { ran = true; return nil })
	if !ran {
		t.Fatal("Run did not run after Thaw")
	}
}

// FuzzMMIORestoreState feeds the transport's decoder arbitrary state:
// it must refuse or accept without a panic, and a transport it accepted
// must serve a notify on whatever rings it now has.
func FuzzMMIORestoreState(f *testing.F) {
	r := newRig(f, 8, false)
	r.initDriver(FeatureVersion1)
	good, err := r.dev.SaveState()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"version":1,"device_id":2,"status":15,"drv_features":4294967296,"queues":[{"num":256,"ready":true,"desc":0,"driver":4096,"device":8192,"last_avail":65535,"used_idx":7}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newRig(t, 8, false)
		if r.dev.RestoreState(b) != nil {
			return
		}
		for i := range r.mem {
			r.mem[i] = byte(i * 7)
		}
		r.irq = r.dev.irqLevel
		r.w32(RegQueueNotify, 0)
		if _, err := r.dev.SaveState(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNetRestoreSetsOffloads: a restored network device is on a new tap,
// which gets the offloads the restored driver accepted at once, without
// waiting for a notify the driver already made before the save.
func TestNetRestoreSetsOffloads(t *testing.T) {
	a := newNetRig(t, RateLimit{})
	if a.net.Features()&NetFGuestCsum == 0 {
		t.Skip("the fake tap offers no offloads")
	}
	a.start(FeatureVersion1 | NetFGuestCsum | NetFGuestTSO4)
	a.w32(RegQueueNotify, netRxQ)
	b, err := a.tr.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	r := newNetRig(t, RateLimit{})
	copy(r.mem, a.mem)
	if err := r.tr.RestoreState(b); err != nil {
		t.Fatal(err)
	}
	if got := r.tap.lastOffload(); got != TunFCsum|TunFTSO4 {
		t.Errorf("restored tap offloads %#x, want CSUM|TSO4", got)
	}
}
