package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// MMIO register offsets (virtio 1.2 §4.2.2).
const (
	RegMagic            = 0x000
	RegVersion          = 0x004
	RegDeviceID         = 0x008
	RegVendorID         = 0x00c
	RegDeviceFeatures   = 0x010
	RegDeviceFeatSel    = 0x014
	RegDriverFeatures   = 0x020
	RegDriverFeatSel    = 0x024
	RegQueueSel         = 0x030
	RegQueueNumMax      = 0x034
	RegQueueNum         = 0x038
	RegQueueReady       = 0x044
	RegQueueNotify      = 0x050
	RegInterruptStatus  = 0x060
	RegInterruptACK     = 0x064
	RegStatus           = 0x070
	RegQueueDescLow     = 0x080
	RegQueueDescHigh    = 0x084
	RegQueueDriverLow   = 0x090
	RegQueueDriverHigh  = 0x094
	RegQueueDeviceLow   = 0x0a0
	RegQueueDeviceHigh  = 0x0a4
	RegSHMSel           = 0x0ac
	RegSHMLenLow        = 0x0b0
	RegSHMLenHigh       = 0x0b4
	RegSHMBaseLow       = 0x0b8
	RegSHMBaseHigh      = 0x0bc
	RegQueueReset       = 0x0c0
	RegConfigGeneration = 0x0fc
	RegConfig           = 0x100

	// WindowSize is the size of the MMIO window.
	WindowSize = 0x1000
)

// Identification.
const (
	MagicValue = 0x74726976 // "virt"
	Version    = 2
	VendorID   = 0x4f4e4558 // "XENO"
)

// Device status bits.
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 0x40
	StatusFailed           = 0x80
)

// FeatureVersion1 is VIRTIO_F_VERSION_1, offered by every device.
const FeatureVersion1 = 1 << 32

// InterruptStatus bits.
const (
	InterruptUsedRing = 1
	InterruptConfig   = 2
)

// MMIO is the virtio-mmio transport of one device: its register window,
// the status and feature negotiation, its virtqueues (one, or a
// QueueDevice's NumQueues) and the interrupt line. Its methods are safe
// for concurrent use by several vCPUs and the device's own goroutines.
type MMIO struct {
	mu  sync.Mutex
	mem Memory
	dev Device
	irq func(level bool)

	devFeatSel, drvFeatSel uint32
	drvFeatures            uint64
	queueSel               uint32
	status                 uint32
	isr                    uint32
	irqLevel               bool
	qs                     []queue
	qdev                   QueueDevice // dev, when it serves its own queues
	frozen                 bool        // Freeze: Run does nothing
}

// NewMMIO returns the transport for dev over guest memory mem. irq drives
// the device's interrupt line as a level: true while InterruptStatus is
// non-zero.
func NewMMIO(mem Memory, dev Device, irq func(level bool)) (*MMIO, error) {
	if mem == nil || dev == nil {
		return nil, errors.New("virtio: the transport needs guest memory and a device")
	}
	if irq == nil {
		irq = func(bool) {}
	}
	t := &MMIO{mem: mem, dev: dev, irq: irq, qs: make([]queue, 1)}
	if qd, ok := dev.(QueueDevice); ok {
		n := qd.NumQueues()
		if n < 1 || n > maxQueues {
			return nil, fmt.Errorf("virtio: device %d wants %d queues, 1 to %d", dev.DeviceID(), n, maxQueues)
		}
		t.qs, t.qdev = make([]queue, n), qd
		qd.Attach(t)
	}
	return t, nil
}

// maxQueues bounds a device's virtqueues.
const maxQueues = 8

// sel is the queue QueueSel selects, or nil when it selects none.
func (t *MMIO) sel() *queue {
	if t.queueSel >= uint32(len(t.qs)) {
		return nil
	}
	return &t.qs[t.queueSel]
}

func (t *MMIO) features() uint64 { return FeatureVersion1 | t.dev.Features() }

// Read handles a guest read of len(data) bytes at offset off in the MMIO
// window. Registers are 32-bit; the config space accepts any width.
func (t *MMIO) Read(off uint64, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(data)
	if off >= RegConfig {
		config := t.dev.Config()
		for i := range data {
			if o := off - RegConfig + uint64(i); o < uint64(len(config)) {
				data[i] = config[o]
			}
		}
		return
	}
	if len(data) != 4 || off%4 != 0 {
		return
	}
	binary.LittleEndian.PutUint32(data, t.readReg(off))
}

func (t *MMIO) readReg(off uint64) uint32 {
	switch off {
	case RegMagic:
		return MagicValue
	case RegVersion:
		return Version
	case RegDeviceID:
		return t.dev.DeviceID()
	case RegVendorID:
		return VendorID
	case RegDeviceFeatures:
		switch t.devFeatSel {
		case 0:
			return uint32(t.features())
		case 1:
			return uint32(t.features() >> 32)
		}
	case RegQueueNumMax:
		if t.sel() != nil {
			return QueueNumMax
		}
	case RegQueueNum:
		if q := t.sel(); q != nil {
			return q.num
		}
	case RegQueueReady:
		if q := t.sel(); q != nil && q.ready {
			return 1
		}
	case RegInterruptStatus:
		return t.isr
	case RegStatus:
		return t.status
	case RegSHMLenLow, RegSHMLenHigh, RegSHMBaseLow, RegSHMBaseHigh:
		return 0xffffffff // no shared memory regions
	}
	return 0
}

// Write handles a guest write at offset off in the MMIO window.
func (t *MMIO) Write(off uint64, data []byte) {
	if off >= RegConfig || len(data) != 4 || off%4 != 0 {
		return // the config space is read-only; odd widths are ignored
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v := binary.LittleEndian.Uint32(data)
	q := t.sel()
	if q == nil {
		q = &queue{} // writes to a queue that does not exist go nowhere
	}
	// Queue registers only change while the queue is off (§4.2.2.2).
	queueWritable := t.sel() != nil && !q.ready
	switch off {
	case RegDeviceFeatSel:
		t.devFeatSel = v
	case RegDriverFeatures:
		if t.status&StatusFeaturesOK == 0 {
			switch t.drvFeatSel {
			case 0:
				t.drvFeatures = t.drvFeatures&^0xffffffff | uint64(v)
			case 1:
				t.drvFeatures = t.drvFeatures&0xffffffff | uint64(v)<<32
			}
		}
	case RegDriverFeatSel:
		t.drvFeatSel = v
	case RegQueueSel:
		t.queueSel = v
	case RegQueueNum:
		if queueWritable {
			q.num = v
		}
	case RegQueueReady:
		if t.sel() == nil {
			return
		}
		if v&1 == 0 {
			q.ready = false
			return
		}
		if !q.ready {
			if err := q.check(t.mem); err != nil {
				t.needsReset()
				return
			}
			q.ready = true
			q.lastAvail, q.usedIdx = 0, 0
		}
	case RegQueueNotify:
		if v < uint32(len(t.qs)) {
			t.process(int(v))
		}
	case RegInterruptACK:
		t.isr &^= v
		t.update()
	case RegStatus:
		t.writeStatus(v)
	case RegQueueDescLow, RegQueueDescHigh:
		if queueWritable {
			setHalf(&q.desc, off == RegQueueDescHigh, v)
		}
	case RegQueueDriverLow, RegQueueDriverHigh:
		if queueWritable {
			setHalf(&q.driver, off == RegQueueDriverHigh, v)
		}
	case RegQueueDeviceLow, RegQueueDeviceHigh:
		if queueWritable {
			setHalf(&q.device, off == RegQueueDeviceHigh, v)
		}
	}
}

// setHalf writes one 32-bit half of a 64-bit queue address, as the
// driver programs them through a Low and a High register.
func setHalf(p *uint64, high bool, v uint32) {
	if high {
		*p = *p&0xffffffff | uint64(v)<<32
	} else {
		*p = *p&^0xffffffff | uint64(v)
	}
}

func (t *MMIO) writeStatus(v uint32) {
	if v == 0 {
		t.reset()
		return
	}
	v &= 0xff
	if v&StatusFeaturesOK != 0 && t.status&StatusFeaturesOK == 0 {
		// Refuse features we do not offer, and legacy drivers.
		if t.drvFeatures&^t.features() != 0 || t.drvFeatures&FeatureVersion1 == 0 {
			v &^= StatusFeaturesOK
		}
	}
	t.status = v&^StatusDeviceNeedsReset | t.status&StatusDeviceNeedsReset
}

func (t *MMIO) reset() {
	t.devFeatSel, t.drvFeatSel, t.drvFeatures, t.queueSel = 0, 0, 0, 0
	t.status = 0
	for i := range t.qs {
		t.qs[i] = queue{bufs: t.qs[i].bufs[:0]}
	}
	t.isr = 0
	t.update()
	if t.qdev != nil {
		t.qdev.Reset()
	}
}

// needsReset stops the device after a driver error until it is reset and
// tells the driver through a configuration-change interrupt (§2.1.2).
func (t *MMIO) needsReset() {
	t.status |= StatusDeviceNeedsReset
	for i := range t.qs {
		t.qs[i].ready = false
	}
	t.isr |= InterruptConfig
	t.update()
	if t.qdev != nil {
		t.qdev.Reset()
	}
}

// running reports whether the driver has the device running.
func (t *MMIO) running() bool {
	return t.status&StatusDriverOK != 0 && t.status&StatusDeviceNeedsReset == 0
}

func (t *MMIO) update() {
	level := t.isr != 0
	if level != t.irqLevel {
		t.irqLevel = level
		t.irq(level)
	}
}

// process handles the driver's notify of queue qi: a QueueDevice is
// told, any other device completes every request made available.
func (t *MMIO) process(qi int) {
	if !t.qs[qi].ready || !t.running() {
		return
	}
	if t.qdev != nil {
		qs := &Queues{t: t}
		t.finish(qs, t.qdev.Notify(qs, qi))
		return
	}
	notify, err := t.qs[0].drain(t.mem, t.dev)
	if err != nil {
		t.needsReset()
		return
	}
	if notify {
		t.isr |= InterruptUsedRing
		t.update()
	}
}

// Run calls f with access to the queues, under the transport's lock, if
// the driver has the device running and it is not frozen (Freeze);
// otherwise it does nothing. A
// QueueDevice's goroutines use it to complete requests (a receive queue
// the host fills). An error from f means the driver broke the ring: the
// device then needs a reset.
func (t *MMIO) Run(f func(*Queues) error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.running() || t.frozen {
		return
	}
	qs := &Queues{t: t}
	t.finish(qs, f(qs))
}

func (t *MMIO) finish(qs *Queues, err error) {
	qs.t = nil // the Queues is not to be used after this
	if err != nil {
		t.needsReset()
		return
	}
	if qs.interrupt {
		t.isr |= InterruptUsedRing
		t.update()
	}
}
