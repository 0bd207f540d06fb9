package vm

import (
	"bytes"
	"testing"

	"github.com/xeno-hv/xeno/hv/virtio"
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

// idleTap is a tap that never delivers a frame.
type idleTap struct{}

func (idleTap) Read([]byte) (int, error)     { select {} }
func (idleTap) Writev([][]byte) (int, error) { return 0, nil }
func (idleTap) SetOffload(int) error         { return nil }
func (idleTap) Close() error                 { return nil }

func TestNetStatus(t *testing.T) {
	mac := DefaultMAC("", "web", 1)
	n, err := virtio.NewNet(idleTap{}, virtio.NetConfig{MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	limit := virtio.RateLimit{Bytes: 1000000, Burst: 65536}
	v := &VM{}
	v.dev.nets = []netDev{{dev: n, tap: "xn0", mac: mac}, {dev: n, tap: "xn1", mac: mac, limit: limit}}
	st := v.netStatus()
	if len(st) != 2 || st[0].Index != 0 || st[0].Tap != "xn0" || st[0].MAC != mac.String() || st[0].RateLimit != nil {
		t.Fatalf("status %+v", st)
	}
	if r := st[1].RateLimit; st[1].Index != 1 || r == nil || r.BytesPerSec != 1000000 || r.Burst != 65536 || r.PacketsPerSec != 0 {
		t.Errorf("limited device %+v", st[1])
	}
}
