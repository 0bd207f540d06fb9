package vm

import (
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/hv/abi"
)

// TestDeviceStatesRoundTrip saves every port device of one domain in
// the middle of guest conversations (an info item half read, an i8042
// answer not yet read, an RTC index selected) and restores them in
// another: each conversation goes on where it stopped.
func TestDeviceStatesRoundTrip(t *testing.T) {
	in := abi.Interface{Major: 1, Minor: 2}
	a := testVM(t, in)
	a.portOut(abi.PortInfoSelect, []byte{byte(abi.SelName), 0})
	half := []byte{0}
	a.portIn(abi.PortInfoData, half)
	a.portOut(0x64, []byte{0x20}) // read the command byte: one answer waits
	a.portOut(0x70, []byte{0x0b})
	a.portOut(abi.PortBootTimer, []byte{1})
	secs := map[string][]byte{}
	if err := a.saveDevices(func(kind string, b []byte) error { secs[kind] = b; return nil }); err != nil {
		t.Fatal(err)
	}
	b := testVM(t, in)
	b.cfg.Name = "other" // the item in flight is the saved one, not re-read
	fired := false
	b.dev.xeno.hooks.bootTimer = func(int64) { fired = true }
	if err := b.restoreDevices(secs); err != nil {
		t.Fatal(err)
	}
	rest := []byte{0}
	b.portIn(abi.PortInfoData, rest)
	if half[0] != 'n' || rest[0] != 0 {
		t.Errorf("info item: read %q then %q after the restore, want \"n\" then its end", half, rest)
	}
	st := []byte{0}
	b.portIn(0x64, st)
	if st[0]&i8042StatusOBF == 0 {
		t.Error("the i8042's pending answer was lost")
	}
	r := []byte{0}
	b.portIn(0x71, r)
	if r[0] != 0x02 {
		t.Errorf("RTC register B read %#x, want 0x02: the index was lost", r[0])
	}
	b.portOut(abi.PortBootTimer, []byte{1})
	if fired {
		t.Error("the boot timer fired again after the restore")
	}
	delete(secs, "dev.rtc")
	if err := b.restoreDevices(secs); err == nil || !strings.Contains(err.Error(), `no section "dev.rtc"`) {
		t.Errorf("a snapshot without the RTC: %v", err)
	}
}

func TestLegacyStateHostile(t *testing.T) {
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	for _, c := range []struct {
		dev      stateful
		in, want string
	}{
		{v.dev.kbc, `{"version":1,"out":"` + strings.Repeat("AAAA", 6) + `"}`, "at most 16"},
		{v.dev.kbc, `{"version":1,"pending":170}`, "pending command 0xaa"},
		{v.dev.xeno, `{"version":1,"sel":70000}`, "selector 70000"},
		{v.dev.xeno, `{"version":1,"sel":1,"cur":"YWI=","off":3}`, "offset 3 in an item of 2"},
		{v.dev.xeno, `{"version":1,"sel":1,"off":-1}`, "offset -1"},
		{v.dev.xeno, `{"version":1,"cur":"` + strings.Repeat("A", 8000) + `"}`, "at most 4096"},
		{v.dev.rtc, `{"version":1,"index":256}`, "cannot unmarshal"},
	} {
		if err := c.dev.RestoreState([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.40s: got %v, want %q", c.in, err, c.want)
		}
	}
}
