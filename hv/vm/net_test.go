package vm

import (
	"bytes"
	"testing"
)

func TestDefaultMAC(t *testing.T) {
	a := DefaultMAC("5f0c3f4e-3a4b-4c61-9f1e-0e2a1b3c4d5e", "web", 0)
	if !bytes.Equal(a[:3], []byte{0x00, 0x16, 0x3e}) || a[3]&0x80 != 0 || len(a) != 6 {
		t.Fatalf("%s: want 00:16:3e:0x:xx:xx", a)
	}
	if b := DefaultMAC("5f0c3f4e-3a4b-4c61-9f1e-0e2a1b3c4d5e", "other name", 0); !bytes.Equal(a, b) {
		t.Errorf("the UUID decides, not the name: %s, %s", a, b)
	}
	if b := DefaultMAC("5f0c3f4e-3a4b-4c61-9f1e-0e2a1b3c4d5e", "web", 1); bytes.Equal(a, b) {
		t.Errorf("devices 0 and 1 share %s", a)
	}
	if x, y := DefaultMAC("", "web", 0), DefaultMAC("", "db", 0); bytes.Equal(x, y) {
		t.Errorf("without a UUID, two names share %s", x)
	}
}
