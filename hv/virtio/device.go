package virtio

// Memory is the guest's RAM as the hv maps it.
type Memory interface {
	// Slice returns the host bytes of [gpa, gpa+n), or false unless that
	// range lies wholly inside guest RAM.
	Slice(gpa, n uint64) ([]byte, bool)
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
