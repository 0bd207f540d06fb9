package acpi

import (
	"encoding/binary"
	"testing"
)

type pmProbe struct {
	t      *testing.T
	sci    bool
	sleeps []int
}

func newPMProbe(t *testing.T) (*PM, *pmProbe) {
	p := &pmProbe{t: t}
	pm := NewPM(func(l bool) {
		if l == p.sci {
			t.Fatalf("sci(%v) without a change", l)
		}
		p.sci = l
	}, func(typ int) { p.sleeps = append(p.sleeps, typ) })
	return pm, p
}

// rd and wr access size bytes at port, as the port bus does.
func rd(pm *PM, port uint16, size int) uint32 {
	var d [4]byte
	pm.Read(uint64(port-PM1aEvt), d[:size])
	return binary.LittleEndian.Uint32(d[:])
}

func wr(pm *PM, port uint16, size int, v uint32) {
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], v)
	pm.Write(uint64(port-PM1aEvt), d[:size])
}

func TestPMACPIMode(t *testing.T) {
	pm, _ := newPMProbe(t)
	// ACPICA's acpi_hw_get_mode: SCI_EN set means the OS need not write
	// SMI_CMD; it must stay set whatever the OS writes.
	if rd(pm, PM1aCnt, 2)&SCIEn == 0 {
		t.Fatal("SCI_EN clear at reset")
	}
	wr(pm, PM1aCnt, 2, 0)
	if rd(pm, PM1aCnt, 2)&SCIEn == 0 {
		t.Fatal("SCI_EN cleared by a write")
	}
}

func TestPMPowerButton(t *testing.T) {
	pm, p := newPMProbe(t)
	pm.PressPowerButton()
	if p.sci {
		t.Fatal("SCI raised with PWRBTN_EN clear")
	}
	if rd(pm, PM1aEvt, 2)&PwrBtnSts == 0 {
		t.Fatal("PWRBTN_STS not latched")
	}
	wr(pm, PM1aEvt+2, 2, PwrBtnEn)
	if !p.sci {
		t.Fatal("enabling PWRBTN_EN with status set did not raise the SCI")
	}
	if rd(pm, PM1aEvt+2, 2) != PwrBtnEn {
		t.Error("PM1_EN does not read back")
	}
	wr(pm, PM1aEvt, 2, 0) // writing 0 changes nothing
	if !p.sci {
		t.Fatal("writing 0 to PM1_STS cleared the SCI")
	}
	wr(pm, PM1aEvt, 2, PwrBtnSts) // write 1 to clear
	if p.sci || rd(pm, PM1aEvt, 2)&PwrBtnSts != 0 {
		t.Fatal("write-1-to-clear did not clear PWRBTN_STS and the SCI")
	}
	// Byte access to the high half of PM1_STS, as some OSes do.
	pm.PressPowerButton()
	if !p.sci || rd(pm, PM1aEvt+1, 1) != PwrBtnSts>>8 {
		t.Fatal("second press not seen")
	}
	wr(pm, PM1aEvt+1, 1, PwrBtnSts>>8)
	if p.sci {
		t.Fatal("byte write-1-to-clear failed")
	}
	// A 32-bit read of the event block returns STS then EN.
	if got := rd(pm, PM1aEvt, 4); got != uint32(PwrBtnEn)<<16 {
		t.Errorf("32-bit PM1 event read = %#x", got)
	}
}

func TestPMSleep(t *testing.T) {
	pm, p := newPMProbe(t)
	// SLP_TYP without SLP_EN does nothing; then Linux's acpi_hw_legacy_sleep
	// writes SLP_TYP and SLP_TYP|SLP_EN.
	wr(pm, PM1aCnt, 2, S5SlpTyp<<SlpTypShift|SCIEn)
	if len(p.sleeps) != 0 {
		t.Fatal("sleep entered without SLP_EN")
	}
	if got := rd(pm, PM1aCnt, 2); got != S5SlpTyp<<SlpTypShift|SCIEn {
		t.Fatalf("PM1_CNT = %#x", got)
	}
	wr(pm, PM1aCnt, 2, S5SlpTyp<<SlpTypShift|SlpEn|SCIEn)
	if len(p.sleeps) != 1 || p.sleeps[0] != S5SlpTyp {
		t.Fatalf("sleeps %v, want [%d]", p.sleeps, S5SlpTyp)
	}
	if rd(pm, PM1aCnt, 2)&SlpEn != 0 {
		t.Error("SLP_EN reads back as 1")
	}
}

func TestPMSleepCallbackMayReenter(t *testing.T) {
	var pm *PM
	pm = NewPM(nil, func(int) { pm.PressPowerButton() }) // would deadlock if called under the lock
	wr(pm, PM1aCnt, 2, SlpEn)
	if rd(pm, PM1aEvt, 2)&PwrBtnSts == 0 {
		t.Fatal("callback did not run")
	}
}

func TestPMUnknownPorts(t *testing.T) {
	pm, _ := newPMProbe(t)
	if got := rd(pm, PM1aCnt+2, 2); got != 0xffff {
		t.Errorf("unclaimed port reads %#x", got)
	}
	wr(pm, PM1aCnt+2, 4, 0xffffffff) // must not panic or change anything
	if rd(pm, PM1aEvt, 4) != 0 {
		t.Error("stray write changed PM1 event block")
	}
}

// The global lock: ACPICA writes GBL_EN at init and reads it back; it
// must stick, and must not raise the SCI, since GBL_STS is never set.
func TestPMGlobalLockBits(t *testing.T) {
	pm, p := newPMProbe(t)
	wr(pm, PM1aEvt+2, 2, GblEn)
	if got := rd(pm, PM1aEvt+2, 2); got != GblEn {
		t.Fatalf("PM1_EN = %#x after writing GBL_EN, want %#x", got, GblEn)
	}
	if p.sci || rd(pm, PM1aEvt, 2)&GblSts != 0 {
		t.Fatal("GBL_EN raised the SCI or GBL_STS without a firmware lock owner")
	}
	// Byte access, and both enables together with the power button.
	wr(pm, PM1aEvt+2, 1, 0)
	if rd(pm, PM1aEvt+2, 2) != 0 {
		t.Fatal("GBL_EN not cleared by a byte write")
	}
	wr(pm, PM1aEvt+2, 2, GblEn|PwrBtnEn)
	pm.PressPowerButton()
	if !p.sci || rd(pm, PM1aEvt+2, 2) != GblEn|PwrBtnEn {
		t.Fatal("power button SCI lost with GBL_EN set")
	}
	// GBL_RLS is write-only; BM_RLD is read/write.
	wr(pm, PM1aCnt, 2, GblRls|BmRld|SCIEn)
	if got := rd(pm, PM1aCnt, 2); got != BmRld|SCIEn {
		t.Errorf("PM1_CNT = %#x after GBL_RLS|BM_RLD, want %#x", got, BmRld|SCIEn)
	}
}
