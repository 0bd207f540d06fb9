package virtio

// Memory is the guest's RAM as the hv maps it.
type Memory interface {
	// Slice returns the host bytes of [gpa, gpa+n), or false unless that
	// range lies wholly inside guest RAM.
	Slice(gpa, n uint64) ([]byte, bool)
	// Wrote records that the hv wrote into b, a slice Slice returned.
	// KVM's dirty log sees only the guest's own writes, so a live save
	// learns of the device's this way (docs/snapshot.md).
	Wrote(b []byte)
}

// Device is one virtio device type behind the transport, which owns the
// registers, the negotiation and the virtqueue. Its methods are called
// with the transport's lock held.
type Device interface {
	// DeviceID is the virtio device ID (virtio 1.2 §5).
	DeviceID() uint32
	// Features are the device-type feature bits offered; the transport
	// adds VERSION_1 and refuses drivers without it.
	Features() uint64
	// Config is the configuration space, read-only to the driver.
	Config() []byte
	// Serve performs the request in one descriptor chain and returns how
	// many bytes it wrote into the chain's writable buffers. An error
	// means the chain is malformed for this device (no room for a header
	// or a status, say): the transport then asks the driver for a reset.
	Serve(c Chain) (written uint32, err error)
}

// QueueDevice is a device that serves its virtqueues itself: it has
// more than one, or completes requests later than the driver's notify (a
// receive queue that the host fills when data arrives). The transport
// calls Notify instead of Serve, and the device's goroutines reach the
// queues through MMIO.Run.
type QueueDevice interface {
	Device
	// NumQueues is the number of virtqueues, 1 to 8.
	NumQueues() int
	// Attach gives the device its transport, once, from NewMMIO.
	Attach(t *MMIO)
	// Notify handles the driver's notify of queue qi, with the
	// transport's lock held, on the vCPU thread that wrote the register:
	// it must not block, and its only system calls may be the runtime's
	// (futex; the vCPU's seccomp filter allows little else). An error
	// means the driver broke the ring: the device then needs a reset.
	Notify(q *Queues, qi int) error
	// Reset forgets every request in flight: the driver reset the device
	// or it needs a reset. Called like Notify.
	Reset()
}

// Queues is a QueueDevice's access to its virtqueues, valid only during
// the Notify or Run call that handed it out.
type Queues struct {
	t         *MMIO
	interrupt bool
}

// Elem is one chain taken from a queue: its head index and its buffers,
// which stay valid until the next Pop from the same queue.
type Elem struct {
	Head uint16
	Chain
}

// Pop takes the next chain the driver made available on queue qi, if
// the queue is enabled and has one.
func (q *Queues) Pop(qi int) (Elem, bool, error) {
	if qi < 0 || qi >= len(q.t.qs) || !q.t.qs[qi].ready {
		return Elem{}, false, nil
	}
	head, c, ok, err := q.t.qs[qi].pop(q.t.mem)
	return Elem{Head: head, Chain: c}, ok, err
}

// Push returns e to the driver as used, with written bytes written into
// its writable buffers, and raises the interrupt afterwards unless the
// driver asked for none on that queue. e.Writable must be the chain's
// writable buffers, as Pop gave them: a device writes guest memory only
// there, and before it pushes the chain, so that Push can record every
// byte the device wrote (Memory.Wrote).
func (q *Queues) Push(qi int, e Elem, written uint32) error {
	if qi < 0 || qi >= len(q.t.qs) || !q.t.qs[qi].ready {
		return errRing
	}
	qq := &q.t.qs[qi]
	if err := qq.push(q.t.mem, e.Head, written, e.Writable); err != nil {
		return err
	}
	want, err := qq.interruptWanted(q.t.mem)
	if want {
		q.interrupt = true
	}
	return err
}

// Chain is one descriptor chain's buffers, each wholly inside guest RAM:
// the device-readable ones, then the device-writable ones, in chain order.
type Chain struct {
	Readable, Writable [][]byte
}

// size is the total length of bufs.
func size(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// gather copies from bufs, starting at byte off, into dst and returns the
// number of bytes copied.
func gather(bufs [][]byte, off int, dst []byte) int {
	n := 0
	for _, b := range bufs {
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(dst[n:], b[off:])
		off = 0
		if n == len(dst) {
			break
		}
	}
	return n
}

// scatter copies src into the start of bufs.
func scatter(bufs [][]byte, src []byte) {
	for _, b := range bufs {
		if len(src) == 0 {
			return
		}
		src = src[copy(b, src):]
	}
}
