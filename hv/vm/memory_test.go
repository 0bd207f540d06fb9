package vm

import (
	"encoding/binary"
	"testing"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/kvm"
)

func TestE820(t *testing.T) {
	for _, c := range []struct {
		mib  uint64
		want []E820Entry
	}{
		{256, []E820Entry{
			{0, 0x9fc00, E820RAM}, {0x9fc00, 0xe0000 - 0x9fc00, E820Reserved}, {0xe0000, 0x1000, E820ACPI},
			{0xe1000, 0x100000 - 0xe1000, E820Reserved}, {0x100000, 256<<20 - 0x100000, E820RAM}}},
		{4096, []E820Entry{
			{0, 0x9fc00, E820RAM}, {0x9fc00, 0xe0000 - 0x9fc00, E820Reserved}, {0xe0000, 0x1000, E820ACPI},
			{0xe1000, 0x100000 - 0xe1000, E820Reserved}, {0x100000, 3<<30 - 0x100000, E820RAM},
			{4 << 30, 1 << 30, E820RAM}}},
	} {
		m, err := NewMemory(c.mib << 20)
		if err != nil {
			t.Fatal(err)
		}
		got := m.E820(0x2c0)
		if len(got) != len(c.want) {
			t.Fatalf("%d MiB: e820 %x, want %x", c.mib, got, c.want)
		}
		var ram uint64
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%d MiB: entry %d = %x, want %x", c.mib, i, got[i], c.want[i])
			}
			if got[i].Type == E820RAM {
				ram += got[i].Size
			}
		}
		// Every byte of RAM but the legacy 384 KiB hole is usable.
		if ram != c.mib<<20-(0x100000-0x9fc00) {
			t.Errorf("%d MiB: %d bytes usable", c.mib, ram)
		}
		m.Close()
	}
}

func TestSliceBounds(t *testing.T) {
	m, err := NewMemory(4096 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, c := range []struct {
		gpa, n uint64
		ok     bool
	}{
		{0, 16, true},
		{3<<30 - 16, 16, true},
		{3<<30 - 16, 17, false}, // runs into the MMIO hole
		{3 << 30, 1, false},
		{0xd0000000, 4, false}, // virtio window
		{4 << 30, 1 << 30, true},
		{5<<30 - 1, 2, false},
		{^uint64(0), 2, false},
		{16, ^uint64(0), false},
	} {
		b, ok := m.Slice(c.gpa, c.n)
		if ok != c.ok || (ok && uint64(len(b)) != c.n) {
			t.Errorf("Slice(%#x, %#x) = %d bytes, %v; want %v", c.gpa, c.n, len(b), ok, c.ok)
		}
	}
	// RAM above the hole is the same memory the second KVM slot maps.
	b, _ := m.Slice(4<<30, 8)
	binary.LittleEndian.PutUint64(b, 0x1122334455667788)
	if r := m.regions(); len(r) != 2 || r[1].gpa != 4<<30 || binary.LittleEndian.Uint64(r[1].mem) != 0x1122334455667788 {
		t.Fatalf("regions do not alias Slice")
	}
}

func FuzzSlice(f *testing.F) {
	m, err := NewMemory(64 << 20)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint64(0), uint64(1))
	f.Add(uint64(64<<20-1), uint64(2))
	f.Add(^uint64(0), ^uint64(0))
	f.Fuzz(func(t *testing.T, gpa, n uint64) {
		b, ok := m.Slice(gpa, n)
		if ok && (uint64(len(b)) != n || gpa+n > 64<<20 || gpa+n < gpa) {
			t.Fatalf("Slice(%#x, %#x) accepted a range outside RAM", gpa, n)
		}
		if ok && n > 0 {
			b[0], b[len(b)-1] = 1, 1 // must not fault
		}
	})
}

func TestFilterCPUID(t *testing.T) {
	sup := []kvm.CPUIDEntry{
		{Function: 1, EBX: 0xff000800, ECX: leaf1ECXCX16 | leaf1ECXPOPCNT | leaf1ECXXSAVE | 1},
		{Function: 7, EBX: leaf7EBXSMAP | 1},
		{Function: 0xd, EAX: 7},
		{Function: 0x40000000, EAX: 0x40000001},
		{Function: abi.CPUIDXenoBase, EAX: 0xdead}, // must be replaced, not duplicated
	}
	b := abi.Build{Release: abi.Release{Major: 1, Minor: 3, Patch: 4, Dev: true}, BuildID: "x"}
	cfg := cpuidConfig{build: b, admitted: abi.Interface{Major: 1, Minor: 1}, compat: true, maskPVM: true}
	got := map[uint32]kvm.CPUIDEntry{}
	for _, e := range filterCPUID(sup, cfg, 3) {
		if _, dup := got[e.Function]; dup {
			t.Fatalf("leaf %#x twice", e.Function)
		}
		got[e.Function] = e
	}
	if e := got[1]; e.ECX != 1|leaf1ECXHypervisor || e.EBX>>24 != 3 || e.EBX&0xffffff != 0x000800 {
		t.Errorf("leaf 1: %+v", e)
	}
	if got[7].EBX != 1 {
		t.Errorf("leaf 7 EBX %#x: SMAP not hidden", got[7].EBX)
	}
	if _, ok := got[0xd]; ok {
		t.Errorf("XSAVE leaf 0xd kept though XSAVE is hidden")
	}
	if got[0x40000000].EAX != 0x40000001 {
		t.Errorf("KVM signature leaf lost")
	}
	v := got[abi.CPUIDXenoVer]
	if v.EAX != 1<<16|3 || v.EBX != 4 || v.ECX != abi.CPUIDFlagDev|abi.CPUIDFlagCompat|abi.CPUIDFlagSyscallFixup || v.EDX != 1<<16|1 {
		t.Errorf("leaf 0x40000101: %+v", v)
	}
	if got[abi.CPUIDXenoBase].EAX != abi.CPUIDXenoMax {
		t.Errorf("leaf 0x40000100: %+v", got[abi.CPUIDXenoBase])
	}
	// On hardware KVM nothing is hidden, and no work-around is asked for.
	cfg.maskPVM = false
	for _, e := range filterCPUID(sup, cfg, 0) {
		if e.Function == 1 && e.ECX != sup[0].ECX|leaf1ECXHypervisor {
			t.Errorf("leaf 1 masked on hardware KVM: %#x", e.ECX)
		}
		if e.Function == abi.CPUIDXenoVer && e.ECX&abi.CPUIDFlagSyscallFixup != 0 {
			t.Errorf("syscall fix-up asked for on hardware KVM: ECX %#x", e.ECX)
		}
	}
	if entryFlags(cfg)&abi.CPUIDFlagSyscallFixup != 0 {
		t.Errorf("syscall fix-up in R10 on hardware KVM")
	}
}
