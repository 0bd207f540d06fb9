package virtio

import (
	"encoding/binary"
	"errors"
)

// QueueNumMax is the largest queue the transport accepts.
const QueueNumMax = 256

// Descriptor and ring flags.
const (
	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4

	availFNoInterrupt = 1
)

var errRing = errors.New("virtio: malformed virtqueue")

// queue is one split virtqueue (virtio 1.2 §2.7) as the driver set it up
// through the transport's registers.
type queue struct {
	num                  uint32
	ready                bool
	desc, driver, device uint64
	lastAvail, usedIdx   uint16

	bufs [][]byte // the current chain's buffers, reused per chain
}

// check validates the queue the driver is enabling: a power-of-two size
// within bounds and ring areas aligned and inside guest RAM.
func (q *queue) check(mem Memory) error {
	if q.num == 0 || q.num > QueueNumMax || q.num&(q.num-1) != 0 {
		return errRing
	}
	if q.desc%16 != 0 || q.driver%2 != 0 || q.device%4 != 0 {
		return errRing
	}
	n := uint64(q.num)
	for _, r := range [][2]uint64{{q.desc, 16 * n}, {q.driver, 6 + 2*n}, {q.device, 6 + 8*n}} {
		if _, ok := mem.Slice(r[0], r[1]); !ok {
			return errRing
		}
	}
	return nil
}

func ring(mem Memory, addr, n uint64) ([]byte, error) {
	s, ok := mem.Slice(addr, n)
	if !ok || uint64(len(s)) < n {
		return nil, errRing
	}
	return s, nil
}

// drain has dev serve every chain the driver has made available and
// publishes it as used. It reports whether the driver wants an interrupt
// for what was completed; an error means the ring is malformed.
func (q *queue) drain(mem Memory, dev Device) (bool, error) {
	done := 0
	for {
		head, c, ok, err := q.pop(mem)
		if err != nil {
			return false, err
		}
		if !ok {
			break
		}
		written, err := dev.Serve(c)
		if err != nil {
			// The device may have written some of the buffers before
			// it found the chain malformed.
			wrote(mem, c.Writable)
			return false, err
		}
		if err := q.push(mem, head, written, c.Writable); err != nil {
			return false, err
		}
		done++
	}
	if done == 0 {
		return false, nil
	}
	return q.interruptWanted(mem)
}

// pop takes the next chain the driver has made available, if any. The
// chain's buffers are valid until the next pop.
func (q *queue) pop(mem Memory) (uint16, Chain, bool, error) {
	avail, err := ring(mem, q.driver, 4)
	if err != nil {
		return 0, Chain{}, false, err
	}
	availIdx := binary.LittleEndian.Uint16(avail[2:])
	if uint32(availIdx-q.lastAvail) > q.num {
		return 0, Chain{}, false, errRing // the driver claims more entries than the ring holds
	}
	if q.lastAvail == availIdx {
		return 0, Chain{}, false, nil
	}
	e, err := ring(mem, q.driver+4+2*uint64(q.lastAvail%uint16(q.num)), 2)
	if err != nil {
		return 0, Chain{}, false, err
	}
	head := binary.LittleEndian.Uint16(e)
	c, err := q.walk(mem, head)
	if err != nil {
		return 0, Chain{}, false, err
	}
	q.lastAvail++
	return head, c, true, nil
}

// push publishes the chain at head as used, with written bytes; writable
// are its buffers the device may have written. Every write is recorded
// after it is made (Memory.Wrote): a live save that collects the record
// in between finds the page again in its next round.
func (q *queue) push(mem Memory, head uint16, written uint32, writable [][]byte) error {
	// All of them, not only written bytes: the device's count is a
	// claim, the writes are facts.
	wrote(mem, writable)
	used, err := ring(mem, q.device+4+8*uint64(q.usedIdx%uint16(q.num)), 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(used, uint32(head))
	binary.LittleEndian.PutUint32(used[4:], written)
	q.usedIdx++
	// The element is written before the index that publishes it; Go
	// keeps stores in program order and x86 does not reorder them.
	idx, err := ring(mem, q.device+2, 2)
	if err != nil {
		mem.Wrote(used)
		return err
	}
	binary.LittleEndian.PutUint16(idx, q.usedIdx)
	mem.Wrote(used)
	mem.Wrote(idx)
	return nil
}

func wrote(mem Memory, bufs [][]byte) {
	for _, b := range bufs {
		mem.Wrote(b)
	}
}

// interruptWanted reports whether the driver wants an interrupt for used
// buffers (VRING_AVAIL_F_NO_INTERRUPT clear).
func (q *queue) interruptWanted(mem Memory) (bool, error) {
	flags, err := ring(mem, q.driver, 2)
	if err != nil {
		return false, err
	}
	return binary.LittleEndian.Uint16(flags)&availFNoInterrupt == 0, nil
}

// walk collects the buffers of the chain starting at head.
func (q *queue) walk(mem Memory, head uint16) (Chain, error) {
	q.bufs = q.bufs[:0]
	firstWrite := -1
	idx := head
	for n := uint32(0); ; n++ {
		if uint32(idx) >= q.num || n >= q.num {
			return Chain{}, errRing // index out of range, or a loop
		}
		d, err := ring(mem, q.desc+16*uint64(idx), 16)
		if err != nil {
			return Chain{}, err
		}
		addr := binary.LittleEndian.Uint64(d)
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&descFIndirect != 0 {
			return Chain{}, errRing // VIRTIO_F_INDIRECT_DESC is not offered
		}
		write := flags&descFWrite != 0
		if firstWrite >= 0 && !write {
			return Chain{}, errRing // readable after writable (§2.7.4.2)
		}
		if write && firstWrite < 0 {
			firstWrite = len(q.bufs)
		}
		if length > 0 {
			buf, err := ring(mem, addr, uint64(length))
			if err != nil {
				return Chain{}, err
			}
			q.bufs = append(q.bufs, buf)
		}
		if flags&descFNext == 0 {
			break
		}
		idx = next
	}
	if firstWrite < 0 {
		firstWrite = len(q.bufs)
	}
	return Chain{Readable: q.bufs[:firstWrite], Writable: q.bufs[firstWrite:]}, nil
}
