package vm

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/kvm"
)

// testVM is a VM without KVM or RAM, with every device but the disks on
// its buses.
func testVM(t testing.TB, admitted abi.Interface) *VM {
	t.Helper()
	v := &VM{done: make(chan struct{}), started: time.Now()}
	v.cond = sync.NewCond(&v.mu)
	v.cfg = Config{Admitted: admitted, Console: io.Discard, Log: io.Discard, Name: "n", UUID: "u",
		Build: abi.Build{Release: abi.Release{Major: 1, Minor: 2}, BuildID: "b", Changeset: "c"}}
	v.unk.log = io.Discard
	if err := v.addDevices(func(uint32) func(bool) { return func(bool) {} }); err != nil {
		t.Fatal(err)
	}
	return v
}

// portOut and portIn are one OUT or IN instruction of len(d) bytes, as
// KVM reports it.
func (v *VM) portOut(port uint16, d []byte) {
	v.handleExit(&fakeExit{reason: kvm.ExitIO, io: kvm.IO{Out: true, Size: len(d), Port: port, Count: 1, Data: d}})
}

func (v *VM) portIn(port uint16, d []byte) {
	v.handleExit(&fakeExit{reason: kvm.ExitIO, io: kvm.IO{Size: len(d), Port: port, Count: 1, Data: d}})
}

func readInfo(v *VM, sel uint16) (uint32, []byte) {
	var d [4]byte
	put32(d[:2], uint32(sel))
	v.portOut(abi.PortInfoSelect, d[:2])
	v.portIn(abi.PortInfoLen, d[:])
	n := le32(d[:])
	var b []byte
	for i := uint32(0); i < n && i < 256; i++ {
		var c [1]byte
		v.portIn(abi.PortInfoData, c[:])
		b = append(b, c[0])
	}
	return n, b
}

func TestInfoPortPerInterface(t *testing.T) {
	v := testVM(t, abi.Interface{Major: 1, Minor: 0})
	if n, _ := readInfo(v, abi.SelSignature); n != abi.LenUnsupported {
		t.Errorf("1.0: info port answers (len %#x)", n)
	}
	var d [1]byte
	v.portOut(abi.PortShutdown, []byte{abi.ShutdownPoweroff})
	v.portIn(abi.PortInfoData, d[:])
	if d[0] != 0xff || v.exit != nil {
		t.Errorf("1.0: data port %#x, exit %+v", d[0], v.exit)
	}

	v = testVM(t, abi.Interface{Major: 1, Minor: 2})
	if n, b := readInfo(v, abi.SelSignature); n != 6 || string(b) != "XenoHV" {
		t.Errorf("signature %d %q", n, b)
	}
	if n, _ := readInfo(v, abi.SelUptime); n != abi.LenUnsupported {
		t.Errorf("1.2 answers the 1.3 uptime selector")
	}
	// Past the end the data port reads 0; a new select restarts.
	readInfo(v, abi.SelName)
	v.portIn(abi.PortInfoData, d[:])
	if d[0] != 0 {
		t.Errorf("past the end: %#x", d[0])
	}
	v.portOut(abi.PortShutdown, []byte{abi.ShutdownCrash})
	if v.exit == nil || v.exit.Reason != control.ReasonCrash {
		t.Errorf("shutdown port crash: %+v", v.exit)
	}
}

func TestI8042(t *testing.T) {
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	v.portOut(0x64, []byte{0xaa})
	var d [1]byte
	v.portIn(0x64, d[:])
	if d[0]&i8042StatusOBF == 0 {
		t.Fatalf("no output after self-test: status %#x", d[0])
	}
	v.portIn(0x60, d[:])
	if d[0] != 0x55 {
		t.Fatalf("self-test answered %#x", d[0])
	}
	v.portOut(0x64, []byte{0x60})
	v.portOut(0x60, []byte{0x47})
	v.portOut(0x64, []byte{0x20})
	v.portIn(0x60, d[:])
	if d[0] != 0x47 || v.exit != nil {
		t.Fatalf("command byte %#x, exit %+v", d[0], v.exit)
	}
	v.portOut(0x64, []byte{0xfe})
	if v.exit == nil || v.exit.Reason != control.ReasonReboot {
		t.Fatalf("reset pulse: %+v", v.exit)
	}
}

// FuzzPorts drives the port bus with arbitrary accesses: nothing may
// panic, and ports with no device read all ones.
func FuzzPorts(f *testing.F) {
	f.Add([]byte{0x10, 0x0e, 1, 2, 5, 0, 0x14, 0x0e, 0, 4, 0, 0})
	f.Add([]byte{0x64, 0x00, 1, 1, 0xd1, 0, 0x60, 0x00, 1, 1, 0, 0})
	f.Add([]byte{0x71, 0x00, 0, 1, 0, 0, 0x19, 0x0e, 1, 1, 7, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		v := testVM(t, abi.Interface{Major: 1, Minor: 3})
		for len(ops) >= 6 {
			port := uint16(ops[0]) | uint16(ops[1])<<8
			write := ops[2]&1 == 1
			n := int(ops[3]%4) + 1
			d := append([]byte(nil), ops[4:6]...)
			d = append(d, 0, 0)[:n]
			ops = ops[6:]
			if port >= com1Base && port < com1Base+8 {
				continue // the UART has its own fuzz target
			}
			if write {
				v.portOut(port, d)
				continue
			}
			v.portIn(port, d)
			if _, _, ok := v.dev.pio.Find(uint64(port)); !ok {
				for _, b := range d {
					if b != 0xff {
						t.Fatalf("unknown port %#x read %x", port, d)
					}
				}
			}
		}
	})
}
