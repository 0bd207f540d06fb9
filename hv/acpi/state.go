package acpi

import "github.com/xeno-hv/xeno/hv/devstate"

const pmStateVersion = 1

type pmState struct {
	Version int    `json:"version"`
	Sts     uint16 `json:"sts"`
	En      uint16 `json:"en"`
	Cnt     uint16 `json:"cnt"`
}

// SaveState encodes the PM1 registers (docs/devices.md).
func (p *PM) SaveState() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return devstate.Encode("acpi-pm", &pmState{Version: pmStateVersion, Sts: p.sts, En: p.en, Cnt: p.ctl})
}

// RestoreState sets the PM1 registers SaveState encoded, keeping only
// the bits the block implements, and drives the SCI to match.
func (p *PM) RestoreState(b []byte) error {
	var s pmState
	if err := devstate.Decode("acpi-pm", b, pmStateVersion, &s); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sts = s.Sts & stsImplemented
	p.en = s.En & enImplemented
	p.ctl = s.Cnt&cntWritable | SCIEn
	p.sciLevel = false
	p.update()
	return nil
}
