package acpi

import (
	"strings"
	"testing"
)

func TestPMStateRoundTrip(t *testing.T) {
	a := NewPM(nil, nil)
	en := uint16(PwrBtnEn)
	a.Write(offEn, []byte{byte(en), byte(en >> 8)})
	a.PressPowerButton()
	b, err := a.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	var sci []bool
	r := NewPM(func(l bool) { sci = append(sci, l) }, nil)
	if err := r.RestoreState(b); err != nil {
		t.Fatal(err)
	}
	if len(sci) != 1 || !sci[0] || !r.SCI() {
		t.Errorf("restored PM with a pressed, enabled button drove the SCI %v, want [true]", sci)
	}
}

func TestPMStateHostile(t *testing.T) {
	p := NewPM(nil, nil)
	// Bits the block does not implement are dropped, not kept.
	if err := p.RestoreState([]byte(`{"version":1,"sts":65535,"en":65535,"cnt":65535}`)); err != nil {
		t.Fatal(err)
	}
	d := make([]byte, 6)
	p.Read(0, d)
	sts, en := uint16(d[0])|uint16(d[1])<<8, uint16(d[2])|uint16(d[3])<<8
	if sts&^stsImplemented != 0 || en&^enImplemented != 0 {
		t.Errorf("sts %#x en %#x: unimplemented bits restored", sts, en)
	}
	for _, in := range []string{`{"version":1,"sts":70000}`, `{"version":0}`, `nope`} {
		if err := p.RestoreState([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), "acpi-pm state: ") {
			t.Errorf("%q: got %v", in, err)
		}
	}
}
