// Package virtio emulates a virtio-mmio (version 2, "modern") block
// device over a host file, with one split virtqueue.
//
// Everything the guest controls is bounded before use: the queue size, the
// ring addresses, every descriptor index, chain length and buffer, the
// sector range and the avail index. A malformed ring puts the device in
// DEVICE_NEEDS_RESET and it stops processing until the driver resets it; a
// bad request inside a well-formed chain completes with VIRTIO_BLK_S_IOERR.
// No guest value can make the hv panic or touch memory outside guest RAM.
package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Memory is the guest's RAM as the hv maps it.
type Memory interface {
	// Slice returns the host bytes of [gpa, gpa+n), or false unless that
	// range lies wholly inside guest RAM.
	Slice(gpa, n uint64) ([]byte, bool)
}

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
	MagicValue    = 0x74726976 // "virt"
	Version       = 2
	DeviceIDBlock = 2
	VendorID      = 0x4f4e4558 // "XENO"
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

// Feature bits.
const (
	FeatureBlkSegMax  = 1 << 2
	FeatureBlkRO      = 1 << 5
	FeatureBlkBlkSize = 1 << 6
	FeatureBlkFlush   = 1 << 9
	FeatureVersion1   = 1 << 32
)

// InterruptStatus bits.
const (
	InterruptUsedRing = 1
	InterruptConfig   = 2
)

// Request types and status values (virtio 1.2 §5.2.6).
const (
	BlkTIn    = 0
	BlkTOut   = 1
	BlkTFlush = 4
	BlkTGetID = 8

	BlkSOK     = 0
	BlkSIOErr  = 1
	BlkSUnsupp = 2

	SectorSize = 512
	blkIDBytes = 20
)

// Descriptor and ring flags.
const (
	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4

	availFNoInterrupt = 1
)

// QueueNumMax is the largest queue the device accepts.
const QueueNumMax = 256

// segMax is the config's seg_max: the data segments one request may use,
// leaving room in a full-size chain for the header and status descriptors.
const segMax = QueueNumMax - 2

type queue struct {
	num                  uint32
	ready                bool
	desc, driver, device uint64
	lastAvail, usedIdx   uint16
}

// Block is one virtio-mmio block device. Its methods are safe for
// concurrent use by several vCPUs.
type Block struct {
	mu      sync.Mutex
	mem     Memory
	f       *os.File
	ro      bool
	irq     func(level bool)
	sectors uint64
	id      [blkIDBytes]byte
	config  []byte

	devFeatSel, drvFeatSel uint32
	drvFeatures            uint64
	queueSel               uint32
	status                 uint32
	isr                    uint32
	irqLevel               bool
	q                      queue

	segs []segment // reused per request
	// Requests counts completed requests (for tests and stats).
	requests uint64
}

// NewBlock returns a block device backed by f (whole 512-byte sectors;
// a trailing partial sector is not visible). The caller keeps f open for
// the device's lifetime and closes it. irq drives the device's interrupt
// line as a level: true while InterruptStatus is non-zero.
func NewBlock(mem Memory, f *os.File, readOnly bool, irq func(level bool)) (*Block, error) {
	if mem == nil || f == nil {
		return nil, errors.New("virtio: block device needs guest memory and a file")
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("virtio: %s: %w", f.Name(), err)
	}
	if !st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0 {
		return nil, fmt.Errorf("virtio: %s: not a regular file or block device", f.Name())
	}
	size := st.Size()
	if st.Mode()&os.ModeDevice != 0 {
		// Stat reports 0 for block devices; their size is where Seek ends.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return nil, fmt.Errorf("virtio: %s: %w", f.Name(), err)
		}
	}
	if irq == nil {
		irq = func(bool) {}
	}
	b := &Block{mem: mem, f: f, ro: readOnly, irq: irq, sectors: uint64(size) / SectorSize}
	copy(b.id[:], "xeno:"+filepath.Base(f.Name()))
	b.config = b.buildConfig()
	return b, nil
}

// Capacity returns the disk size in 512-byte sectors.
func (b *Block) Capacity() uint64 { return b.sectors }

func (b *Block) features() uint64 {
	f := uint64(FeatureVersion1 | FeatureBlkSegMax | FeatureBlkBlkSize | FeatureBlkFlush)
	if b.ro {
		f |= FeatureBlkRO
	}
	return f
}

// buildConfig lays out struct virtio_blk_config up to blk_size.
func (b *Block) buildConfig() []byte {
	c := make([]byte, 0x18)
	binary.LittleEndian.PutUint64(c[0x00:], b.sectors)
	binary.LittleEndian.PutUint32(c[0x0c:], segMax)
	binary.LittleEndian.PutUint32(c[0x14:], SectorSize)
	return c
}

// Read handles a guest read of len(data) bytes at offset off in the MMIO
// window. Registers are 32-bit; the config space accepts any width.
func (b *Block) Read(off uint64, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(data)
	if off >= RegConfig {
		for i := range data {
			if o := off - RegConfig + uint64(i); o < uint64(len(b.config)) {
				data[i] = b.config[o]
			}
		}
		return
	}
	if len(data) != 4 || off%4 != 0 {
		return
	}
	binary.LittleEndian.PutUint32(data, b.readReg(off))
}

func (b *Block) readReg(off uint64) uint32 {
	switch off {
	case RegMagic:
		return MagicValue
	case RegVersion:
		return Version
	case RegDeviceID:
		return DeviceIDBlock
	case RegVendorID:
		return VendorID
	case RegDeviceFeatures:
		switch b.devFeatSel {
		case 0:
			return uint32(b.features())
		case 1:
			return uint32(b.features() >> 32)
		}
	case RegQueueNumMax:
		if b.queueSel == 0 {
			return QueueNumMax
		}
	case RegQueueNum:
		if b.queueSel == 0 {
			return b.q.num
		}
	case RegQueueReady:
		if b.queueSel == 0 && b.q.ready {
			return 1
		}
	case RegInterruptStatus:
		return b.isr
	case RegStatus:
		return b.status
	case RegSHMLenLow, RegSHMLenHigh, RegSHMBaseLow, RegSHMBaseHigh:
		return 0xffffffff // no shared memory regions
	}
	return 0
}

// Write handles a guest write at offset off in the MMIO window.
func (b *Block) Write(off uint64, data []byte) {
	if off >= RegConfig || len(data) != 4 || off%4 != 0 {
		return // the config space is read-only; odd widths are ignored
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := binary.LittleEndian.Uint32(data)
	q := &b.q
	// Queue registers only change while the queue is off (§4.2.2.2).
	queueWritable := b.queueSel == 0 && !q.ready
	switch off {
	case RegDeviceFeatSel:
		b.devFeatSel = v
	case RegDriverFeatures:
		if b.status&StatusFeaturesOK == 0 {
			switch b.drvFeatSel {
			case 0:
				b.drvFeatures = b.drvFeatures&^0xffffffff | uint64(v)
			case 1:
				b.drvFeatures = b.drvFeatures&0xffffffff | uint64(v)<<32
			}
		}
	case RegDriverFeatSel:
		b.drvFeatSel = v
	case RegQueueSel:
		b.queueSel = v
	case RegQueueNum:
		if queueWritable {
			q.num = v
		}
	case RegQueueReady:
		if b.queueSel != 0 {
			return
		}
		if v&1 == 0 {
			q.ready = false
			return
		}
		if !q.ready {
			if err := b.checkQueue(); err != nil {
				b.needsReset()
				return
			}
			q.ready = true
			q.lastAvail, q.usedIdx = 0, 0
		}
	case RegQueueNotify:
		if v == 0 {
			b.process()
		}
	case RegInterruptACK:
		b.isr &^= v
		b.update()
	case RegStatus:
		b.writeStatus(v)
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

func (b *Block) writeStatus(v uint32) {
	if v == 0 {
		b.reset()
		return
	}
	v &= 0xff
	if v&StatusFeaturesOK != 0 && b.status&StatusFeaturesOK == 0 {
		// Refuse features we do not offer, and legacy drivers.
		if b.drvFeatures&^b.features() != 0 || b.drvFeatures&FeatureVersion1 == 0 {
			v &^= StatusFeaturesOK
		}
	}
	b.status = v&^StatusDeviceNeedsReset | b.status&StatusDeviceNeedsReset
}

func (b *Block) reset() {
	b.devFeatSel, b.drvFeatSel, b.drvFeatures, b.queueSel = 0, 0, 0, 0
	b.status = 0
	b.q = queue{}
	b.isr = 0
	b.update()
}

// needsReset stops the device after a driver error until it is reset and
// tells the driver through a configuration-change interrupt (§2.1.2).
func (b *Block) needsReset() {
	b.status |= StatusDeviceNeedsReset
	b.q.ready = false
	b.isr |= InterruptConfig
	b.update()
}

func (b *Block) update() {
	level := b.isr != 0
	if level != b.irqLevel {
		b.irqLevel = level
		b.irq(level)
	}
}

var errRing = errors.New("virtio: malformed virtqueue")

// checkQueue validates the queue the driver is enabling: a power-of-two
// size within bounds and ring areas aligned and inside guest RAM.
func (b *Block) checkQueue() error {
	q := &b.q
	if q.num == 0 || q.num > QueueNumMax || q.num&(q.num-1) != 0 {
		return errRing
	}
	if q.desc%16 != 0 || q.driver%2 != 0 || q.device%4 != 0 {
		return errRing
	}
	n := uint64(q.num)
	for _, r := range [][2]uint64{{q.desc, 16 * n}, {q.driver, 6 + 2*n}, {q.device, 6 + 8*n}} {
		if _, ok := b.mem.Slice(r[0], r[1]); !ok {
			return errRing
		}
	}
	return nil
}

func (b *Block) ring(addr, n uint64) ([]byte, error) {
	s, ok := b.mem.Slice(addr, n)
	if !ok || uint64(len(s)) < n {
		return nil, errRing
	}
	return s, nil
}

// process completes every request the driver has made available.
func (b *Block) process() {
	q := &b.q
	if !q.ready || b.status&StatusDeviceNeedsReset != 0 || b.status&StatusDriverOK == 0 {
		return
	}
	if err := b.drain(); err != nil {
		b.needsReset()
	}
}

func (b *Block) drain() error {
	q := &b.q
	avail, err := b.ring(q.driver, 4)
	if err != nil {
		return err
	}
	availIdx := binary.LittleEndian.Uint16(avail[2:])
	if uint32(availIdx-q.lastAvail) > q.num {
		return errRing // the driver claims more entries than the ring holds
	}
	done := 0
	for q.lastAvail != availIdx {
		e, err := b.ring(q.driver+4+2*uint64(q.lastAvail%uint16(q.num)), 2)
		if err != nil {
			return err
		}
		head := binary.LittleEndian.Uint16(e)
		written, err := b.request(head)
		if err != nil {
			return err
		}
		used, err := b.ring(q.device+4+8*uint64(q.usedIdx%uint16(q.num)), 8)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(used, uint32(head))
		binary.LittleEndian.PutUint32(used[4:], written)
		q.lastAvail++
		q.usedIdx++
		// The element is written before the index that publishes it; Go
		// keeps stores in program order and x86 does not reorder them.
		idx, err := b.ring(q.device+2, 2)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint16(idx, q.usedIdx)
		done++
		b.requests++
	}
	if done > 0 {
		flags, err := b.ring(q.driver, 2)
		if err != nil {
			return err
		}
		if binary.LittleEndian.Uint16(flags)&availFNoInterrupt == 0 {
			b.isr |= InterruptUsedRing
			b.update()
		}
	}
	return nil
}

type segment struct {
	buf   []byte
	write bool
}

// walk collects the chain starting at head into b.segs.
func (b *Block) walk(head uint16) error {
	q := &b.q
	b.segs = b.segs[:0]
	idx := head
	sawWrite := false
	for n := uint32(0); ; n++ {
		if uint32(idx) >= q.num || n >= q.num {
			return errRing // index out of range, or a loop
		}
		d, err := b.ring(q.desc+16*uint64(idx), 16)
		if err != nil {
			return err
		}
		addr := binary.LittleEndian.Uint64(d)
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&descFIndirect != 0 {
			return errRing // VIRTIO_F_INDIRECT_DESC is not offered
		}
		write := flags&descFWrite != 0
		if sawWrite && !write {
			return errRing // readable after writable (§2.7.4.2)
		}
		sawWrite = sawWrite || write
		if length > 0 {
			buf, err := b.ring(addr, uint64(length))
			if err != nil {
				return err
			}
			b.segs = append(b.segs, segment{buf, write})
		}
		if flags&descFNext == 0 {
			return nil
		}
		idx = next
	}
}

// request performs the request in the chain at head and returns the number
// of bytes written to the driver's buffers. An error means the chain itself
// is malformed, not that the I/O failed.
func (b *Block) request(head uint16) (uint32, error) {
	if err := b.walk(head); err != nil {
		return 0, err
	}
	var rd, wr []segment
	for i, s := range b.segs {
		if s.write {
			rd, wr = b.segs[:i], b.segs[i:]
			break
		}
		rd = b.segs[:i+1]
	}
	var hdr [16]byte
	if gather(rd, 0, hdr[:]) != len(hdr) || total(wr) < 1 {
		return 0, errRing // no header or no status byte
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	// The status is the last writable byte; data is what lies between.
	last := wr[len(wr)-1].buf
	status := &last[len(last)-1]
	written := uint32(1)
	var st byte
	switch typ {
	case BlkTIn:
		n := total(wr) - 1
		st = b.io(sector, wr, 0, n, false)
		if st == BlkSOK {
			written += uint32(n)
		}
	case BlkTOut:
		n := total(rd) - len(hdr)
		if b.ro {
			st = BlkSIOErr
		} else {
			st = b.io(sector, rd, len(hdr), n, true)
		}
	case BlkTFlush:
		if !b.ro && b.f.Sync() != nil {
			st = BlkSIOErr
		}
	case BlkTGetID:
		n := min(total(wr)-1, blkIDBytes)
		scatter(wr, b.id[:n])
		written += uint32(n)
	default:
		st = BlkSUnsupp
	}
	*status = st
	return written, nil
}

// io moves n bytes between the disk at sector and segs starting at byte
// skip of segs, and returns the request status.
func (b *Block) io(sector uint64, segs []segment, skip, n int, write bool) byte {
	if n%SectorSize != 0 || sector > b.sectors || uint64(n/SectorSize) > b.sectors-sector {
		return BlkSIOErr
	}
	pos := int64(sector * SectorSize)
	for _, s := range segs {
		if n == 0 {
			break
		}
		buf := s.buf
		if skip >= len(buf) {
			skip -= len(buf)
			continue
		}
		buf = buf[skip:]
		skip = 0
		if len(buf) > n {
			buf = buf[:n]
		}
		var err error
		if write {
			_, err = b.f.WriteAt(buf, pos)
		} else {
			_, err = b.f.ReadAt(buf, pos)
		}
		if err != nil {
			return BlkSIOErr
		}
		pos += int64(len(buf))
		n -= len(buf)
	}
	return BlkSOK
}

func total(segs []segment) int {
	n := 0
	for _, s := range segs {
		n += len(s.buf)
	}
	return n
}

// gather copies from segs starting at byte off into dst.
func gather(segs []segment, off int, dst []byte) int {
	n := 0
	for _, s := range segs {
		if off >= len(s.buf) {
			off -= len(s.buf)
			continue
		}
		n += copy(dst[n:], s.buf[off:])
		off = 0
		if n == len(dst) {
			break
		}
	}
	return n
}

// scatter copies src into the start of segs.
func scatter(segs []segment, src []byte) {
	for _, s := range segs {
		if len(src) == 0 {
			return
		}
		src = src[copy(s.buf, src):]
	}
}
