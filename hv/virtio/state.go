package virtio

import (
	"fmt"

	"github.com/xeno-hv/xeno/hv/devstate"
)

const mmioStateVersion = 1

// mmioState is what a snapshot keeps of a virtio-mmio transport: the
// negotiation, the interrupt status and each queue as the driver set it
// up, with the device's place in its rings. No device keeps more: block
// requests complete within the notify that made them, on the vCPU that
// wrote it, so a paused domain has none half-done; the network device's
// frames live in the rings and the tap; vsock connections do not survive
// a restore (docs/devices.md).
type mmioState struct {
	Version     int          `json:"version"`
	DeviceID    uint32       `json:"device_id"`
	DevFeatSel  uint32       `json:"dev_feat_sel"`
	DrvFeatSel  uint32       `json:"drv_feat_sel"`
	DrvFeatures uint64       `json:"drv_features"`
	QueueSel    uint32       `json:"queue_sel"`
	Status      uint32       `json:"status"`
	ISR         uint32       `json:"isr"`
	Queues      []queueState `json:"queues"`
}

type queueState struct {
	Num       uint32 `json:"num"`
	Ready     bool   `json:"ready"`
	Desc      uint64 `json:"desc"`
	Driver    uint64 `json:"driver"`
	Device    uint64 `json:"device"`
	LastAvail uint16 `json:"last_avail"`
	UsedIdx   uint16 `json:"used_idx"`
}

// restorer is a device that acts once its transport is restored, with
// the transport's lock held, when the driver has it running: it sets
// what lives outside the rings (a tap's offloads) or tells the driver
// what was lost (vsock's transport reset).
type restorer interface {
	restored(q *Queues) error
}

// Freeze stops the device's own goroutines from touching the rings or
// guest memory (Run does nothing) until Thaw: with the vCPUs paused, the
// transport, its rings and guest memory then hold still while a snapshot
// is taken.
func (t *MMIO) Freeze() {
	t.mu.Lock()
	t.frozen = true
	t.mu.Unlock()
}

// Thaw undoes Freeze and notifies every ready queue, as the driver
// might have, so that work the goroutines found frozen is picked up.
func (t *MMIO) Thaw() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.frozen = false
	if t.qdev == nil {
		return
	}
	for i := range t.qs {
		t.process(i)
	}
}

// SaveState encodes the transport's state (docs/devices.md).
func (t *MMIO) SaveState() ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := mmioState{Version: mmioStateVersion, DeviceID: t.dev.DeviceID(),
		DevFeatSel: t.devFeatSel, DrvFeatSel: t.drvFeatSel, DrvFeatures: t.drvFeatures,
		QueueSel: t.queueSel, Status: t.status, ISR: t.isr}
	for _, q := range t.qs {
		s.Queues = append(s.Queues, queueState{Num: q.num, Ready: q.ready, Desc: q.desc, Driver: q.driver,
			Device: q.device, LastAvail: q.lastAvail, UsedIdx: q.usedIdx})
	}
	return devstate.Encode("virtio-mmio", &s)
}

// RestoreState sets the state SaveState encoded, after checking it
// against this transport and device: the same device type and queue
// count, features it offers, queue sizes within QueueNumMax and the
// rings of ready queues inside guest RAM. It then drives the interrupt
// line to match. On error the transport is unchanged.
func (t *MMIO) RestoreState(b []byte) error {
	var s mmioState
	if err := devstate.Decode("virtio-mmio", b, mmioStateVersion, &s); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("virtio-mmio state: "+format, args...)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case s.DeviceID != t.dev.DeviceID():
		return bad("device type %d, this device is %d", s.DeviceID, t.dev.DeviceID())
	case len(s.Queues) != len(t.qs):
		return bad("%d queues, this device has %d", len(s.Queues), len(t.qs))
	case s.Status&^0xff != 0:
		return bad("status %#x", s.Status)
	case s.ISR&^(InterruptUsedRing|InterruptConfig) != 0:
		return bad("interrupt status %#x", s.ISR)
	case s.DrvFeatures&^t.features() != 0:
		return bad("driver features %#x include some this device does not offer (%#x)", s.DrvFeatures, t.features())
	case s.Status&StatusFeaturesOK != 0 && s.DrvFeatures&FeatureVersion1 == 0:
		return bad("features accepted without VERSION_1")
	}
	qs := make([]queue, len(t.qs))
	for i, q := range s.Queues {
		qs[i] = queue{num: q.Num, ready: q.Ready, desc: q.Desc, driver: q.Driver, device: q.Device,
			lastAvail: q.LastAvail, usedIdx: q.UsedIdx}
		if q.Num > QueueNumMax {
			return bad("queue %d has %d entries, at most %d", i, q.Num, QueueNumMax)
		}
		if q.Ready {
			if err := qs[i].check(t.mem); err != nil {
				return bad("queue %d: size %d, rings at %#x, %#x, %#x: not a valid queue in guest RAM", i, q.Num, q.Desc, q.Driver, q.Device)
			}
		}
	}
	t.devFeatSel, t.drvFeatSel, t.drvFeatures = s.DevFeatSel, s.DrvFeatSel, s.DrvFeatures
	t.queueSel, t.status, t.isr, t.qs = s.QueueSel, s.Status, s.ISR, qs
	if r, ok := t.dev.(restorer); ok && t.running() {
		qs := &Queues{t: t}
		t.finish(qs, r.restored(qs))
	}
	// KVM's line level is not part of the irqchip's state: drive it again.
	t.irqLevel = false
	t.update()
	return nil
}
