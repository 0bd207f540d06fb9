package virtio

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"
)

const fuzzRAM = 64 << 10

// FuzzVirtqueue lets the fuzzer write the descriptor table, the avail ring
// and the request buffers of a running device, then notifies. Whatever the
// guest wrote, the device must not panic, must not grow the disk, and must
// either complete every available entry or ask for a reset.
func FuzzVirtqueue(f *testing.F) {
	seed := func(build func(r *rig)) []byte {
		r := newRig(f, 8, false)
		build(r)
		return append([]byte(nil), r.mem[descAt:descAt+0x2000]...)
	}
	f.Add(seed(func(r *rig) {
		r.request(0, BlkTIn, 1, 0x1800, 512, true)
		binary.LittleEndian.PutUint16(r.mem[availAt+4:], 0)
	}), uint8(4), uint16(1))
	f.Add(seed(func(r *rig) {
		r.request(0, BlkTOut, 2, 0x1800, 512, false)
		r.request(3, BlkTGetID, 0, 0x1a00, 20, true)
	}), uint8(4), uint16(2))
	f.Add(seed(func(r *rig) { r.setDesc(0, descAt, 16, descFNext, 0) }), uint8(3), uint16(1))
	f.Add([]byte{}, uint8(8), uint16(0xffff))

	const sectors = 8
	r := newRig(f, sectors, false)
	f.Fuzz(func(t *testing.T, data []byte, logNum uint8, availIdx uint16) {
		clear(r.mem)
		copy(r.mem[descAt:], data)
		r.t = t
		r.irq = r.dev.irqLevel
		num := uint32(1) << (logNum % 9)
		r.w32(RegStatus, 0)
		r.w32(RegStatus, StatusAcknowledge|StatusDriver)
		r.w32(RegDriverFeatSel, 1)
		r.w32(RegDriverFeatures, 1)
		r.w32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
		r.w32(RegQueueNum, num)
		// Rings right after the table, so fuzzed bytes cover all of them.
		avail := uint32(descAt) + 16*num
		used := (avail + 6 + 2*num + 3) &^ 3
		r.w32(RegQueueDescLow, descAt)
		r.w32(RegQueueDriverLow, avail)
		r.w32(RegQueueDeviceLow, used)
		r.w32(RegQueueReady, 1)
		r.w32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
		binary.LittleEndian.PutUint16(r.mem[avail+2:], availIdx)
		r.w32(RegQueueNotify, 0)

		needsReset := r.r32(RegStatus)&StatusDeviceNeedsReset != 0
		// The used idx in memory is the guest's until the device writes it,
		// so check the device's own count.
		usedIdx := r.dev.qs[0].usedIdx
		if !needsReset && usedIdx != availIdx {
			t.Fatalf("used idx %d, avail idx %d, and no reset requested", usedIdx, availIdx)
		}
		if uint32(usedIdx) > num {
			t.Fatalf("used idx %d beyond one ring of %d", usedIdx, num)
		}
		if usedIdx > 0 && binary.LittleEndian.Uint16(r.mem[used+2:]) != usedIdx {
			t.Fatalf("used idx in memory %d, device completed %d", binary.LittleEndian.Uint16(r.mem[used+2:]), usedIdx)
		}
		st, err := os.Stat(r.file)
		if err != nil || st.Size() != sectors*SectorSize {
			t.Fatalf("disk size changed: %v %v", st.Size(), err)
		}
	})
}

// FuzzRegisters drives the MMIO window with arbitrary accesses, including
// queue setup and notifies over fuzzed memory.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0x70, 0, 0, 0, 3, 0x38, 0, 0, 0, 8, 0x44, 0, 0, 0, 1, 0x50, 0, 0, 0, 0})
	f.Add([]byte{0x24, 0, 0, 0, 1, 0x20, 0, 0, 0, 1, 0x70, 0, 0, 0, 0xb, 0x70, 0, 0, 0, 0xf})
	r := newRig(f, 4, false)
	mem := make(ram, fuzzRAM)
	r.dev.mem = mem
	f.Fuzz(func(t *testing.T, prog []byte) {
		r.t = t
		r.w32(RegStatus, 0)
		r.irq = false
		for i := range mem {
			mem[i] = byte(i * 7)
		}
		for len(prog) >= 5 {
			off := uint64(prog[0]) << 2
			if prog[1]&0x80 != 0 {
				off = RegConfig + uint64(prog[1]&0x7f)
			}
			v := binary.LittleEndian.Uint32(prog[1:])
			width := 1 << (prog[2] & 3)
			if width > 4 {
				width = 4
			}
			var b [8]byte
			if prog[0]&1 != 0 {
				r.dev.Read(off, b[:width])
			} else {
				binary.LittleEndian.PutUint32(b[:], v)
				r.dev.Write(off&^3, b[:4])
			}
			prog = prog[5:]
			if r.dev.qs[0].ready && (r.dev.qs[0].num == 0 || r.dev.qs[0].num > QueueNumMax || r.dev.qs[0].num&(r.dev.qs[0].num-1) != 0) {
				t.Fatalf("queue enabled with size %d", r.dev.qs[0].num)
			}
			if r.irq != (r.dev.isr != 0) {
				t.Fatalf("irq %v with InterruptStatus %#x", r.irq, r.dev.isr)
			}
		}
	})
}

// nullTap is a tap for fuzzing: writes vanish, reads never come.
type nullTap struct{ frames, bytes int }

func (*nullTap) Read([]byte) (int, error) { select {} }
func (t *nullTap) Writev(bufs [][]byte) (int, error) {
	n := size(bufs)
	if n > NetHdrLen+MaxFrame {
		return 0, errors.New("frame larger than MaxFrame written")
	}
	t.frames++
	t.bytes += n
	return n, nil
}
func (*nullTap) SetOffload(int) error { return nil }
func (*nullTap) Close() error         { return nil }

// FuzzNetQueues lets the fuzzer write both queues' descriptor tables,
// avail rings and buffers, choose the features, and then delivers one
// frame of its length to the receive queue and sends whatever the
// transmit queue offers, on the calling goroutine. The device must not
// panic or write a frame over MaxFrame; it must complete every transmit
// entry or ask for a reset, and never use more entries than are
// available.
func FuzzNetQueues(f *testing.F) {
	seed := func(build func(r *netRig)) []byte {
		r := &netRig{t: f, mem: make(ram, ramSize), qsize: 8}
		build(r)
		return append([]byte(nil), r.mem[rxDesc:txUsed]...)
	}
	// Receive: two 1500-byte buffers; transmit: a header and a frame.
	f.Add(seed(func(r *netRig) {
		r.setDesc(netRxQ, 0, rxBufs, 1500, descFWrite, 0)
		r.setDesc(netRxQ, 1, rxBufs+0x1000, 1500, descFWrite, 0)
		binary.LittleEndian.PutUint16(r.mem[rxAvail+4:], 0)
		binary.LittleEndian.PutUint16(r.mem[rxAvail+6:], 1)
		r.setDesc(netTxQ, 0, txBufs, NetHdrLen, descFNext, 1)
		r.setDesc(netTxQ, 1, txBufs+0x100, 60, 0, 0)
	}), uint64(NetFMrgRxbuf), uint16(2), uint16(1), uint16(2000))
	f.Add(seed(func(r *netRig) {
		r.setDesc(netRxQ, 0, rxBufs, 64, descFWrite|descFNext, 0)
		r.setDesc(netTxQ, 0, txBufs, 0xffffffff, descFNext, 0)
	}), uint64(0), uint16(1), uint16(1), uint16(100))
	f.Add([]byte{}, uint64(NetFCsum|NetFHostTSO4), uint16(0xffff), uint16(3), uint16(65535))

	tap := &nullTap{}
	n, err := NewNet(tap, NetConfig{MAC: testMAC})
	if err != nil {
		f.Fatal(err)
	}
	mem := make(ram, ramSize)
	tr, err := NewMMIO(mem, n, nil)
	if err != nil {
		f.Fatal(err)
	}
	r := &netRig{t: f, mem: mem, net: n, tr: tr, qsize: 8}
	pkt := make([]byte, NetHdrLen+MaxFrame)
	var rx rxState
	var tx txState
	lim := newLimiter(RateLimit{}, time.Now())
	f.Fuzz(func(t *testing.T, data []byte, features uint64, rxAvailIdx, txAvailIdx, frameLen uint16) {
		r.t = t
		clear(mem)
		copy(mem[rxDesc:txUsed], data)
		r.start(FeatureVersion1 | features&n.Features())
		binary.LittleEndian.PutUint16(mem[rxAvail+2:], rxAvailIdx)
		binary.LittleEndian.PutUint16(mem[txAvail+2:], txAvailIdx)
		l := NetHdrLen + ethHdrLen + int(frameLen)%(MaxFrame-ethHdrLen+1)
		tr.Run(func(q *Queues) error {
			_, err := rx.deliver(n, q, pkt[:l])
			return err
		})
		for more := true; more; {
			tr.Run(func(q *Queues) error {
				var err error
				_, more, err = tx.send(n, q, lim)
				return err
			})
			more = more && !r.needsReset()
		}

		reset := r.needsReset()
		rxUsedIdx, txUsedIdx := tr.qs[netRxQ].usedIdx, tr.qs[netTxQ].usedIdx
		if !reset && txUsedIdx != txAvailIdx {
			t.Fatalf("tx used %d of %d available, and no reset", txUsedIdx, txAvailIdx)
		}
		if uint32(rxUsedIdx) > uint32(r.qsize) || uint32(txUsedIdx) > uint32(r.qsize) {
			t.Fatalf("used %d/%d entries of an %d-entry ring", rxUsedIdx, txUsedIdx, r.qsize)
		}
		if rxUsedIdx > 0 && uint16(rxUsedIdx-rxAvailIdx) < 0x8000 && rxUsedIdx != rxAvailIdx {
			t.Fatalf("rx used %d beyond avail %d", rxUsedIdx, rxAvailIdx)
		}
	})
}
