package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DeviceIDNet is the virtio device ID of a network device.
const DeviceIDNet = 1

// Network feature bits (virtio 1.2 §5.1.3).
const (
	NetFCsum      = 1 << 0
	NetFGuestCsum = 1 << 1
	NetFMAC       = 1 << 5
	NetFGuestTSO4 = 1 << 7
	NetFGuestTSO6 = 1 << 8
	NetFHostTSO4  = 1 << 11
	NetFHostTSO6  = 1 << 12
	NetFMrgRxbuf  = 1 << 15
	NetFStatus    = 1 << 16

	netOffloads = NetFCsum | NetFGuestCsum | NetFGuestTSO4 | NetFGuestTSO6 | NetFHostTSO4 | NetFHostTSO6
)

// TUNSETOFFLOAD flags (<linux/if_tun.h>): what the tap may hand the
// device, which must match what the guest can take.
const (
	TunFCsum = 0x01
	TunFTSO4 = 0x02
	TunFTSO6 = 0x04
)

// virtio_net_hdr_v1 (§5.1.6): flags, gso_type, hdr_len, gso_size,
// csum_start, csum_offset, num_buffers; 12 bytes with VERSION_1 whether
// or not MRG_RXBUF is negotiated.
const (
	NetHdrLen = 12

	netHdrFNeedsCsum = 1
	netHdrFDataValid = 2

	netGSONone  = 0
	netGSOTCPv4 = 1
	netGSOTCPv6 = 4

	netStatusLinkUp = 1

	ethHdrLen = 14
	// MaxFrame bounds every frame either way: an IP packet of 64 KiB
	// (the largest TSO segment) behind an Ethernet header. With the
	// virtio header, 65562 bytes.
	MaxFrame = 64<<10 + ethHdrLen

	netRxQ, netTxQ = 0, 1

	// maxRxSegs bounds the descriptors one received frame may spread
	// over. Linux uses one per mergeable buffer (a few dozen for 64 KiB)
	// or at most MAX_SKB_FRAGS+2 in one chain; a guest offering more,
	// tinier buffers is refused rather than walked without end.
	maxRxSegs = 1024
	// txIRQBatch is how many sent frames are completed before the
	// interrupt is raised while more keep coming.
	txIRQBatch = 64
	// maxLogLines bounds what a misbehaving guest can write to the log.
	maxLogLines = 20
)

// Tap is the host end of a network device: each Read returns one frame
// and each Writev sends one, led by the 12-byte virtio_net_hdr_v1
// (IFF_VNET_HDR with TUNSETVNETHDRSZ 12).
type Tap interface {
	Read(p []byte) (int, error)
	Writev(bufs [][]byte) (int, error)
	// SetOffload is TUNSETOFFLOAD: the TunF* flags the guest can take.
	SetOffload(flags int) error
	Close() error
}

// NetConfig describes a network device.
type NetConfig struct {
	MAC   net.HardwareAddr // 6 bytes
	Limit RateLimit        // applied to each direction separately
	Log   io.Writer        // problems with the guest's rings or the tap; nil: discarded
}

// NetStats are a network device's counters since it was created. Rx is
// from the tap to the guest, tx from the guest to the tap.
type NetStats struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	// RxDropped counts frames from the tap the guest never got: larger
	// than its buffer (without mergeable buffers), or read before a
	// device reset. TxDropped counts the guest's frames not sent:
	// malformed header or size, or refused by the tap.
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
	// RxThrottled and TxThrottled count the waits the rate limiter
	// imposed; it never drops.
	RxThrottled uint64 `json:"rx_throttled"`
	TxThrottled uint64 `json:"tx_throttled"`
}

// Net is a virtio network device (ID 1) on a tap, with one receive and
// one transmit queue, each served by a goroutine of its own (Start).
// NewMMIO puts it on the bus.
type Net struct {
	tap      Tap
	cfg      NetConfig
	features uint64
	config   []byte
	now      func() time.Time
	t        *MMIO

	// offload is the tap's TUNSETOFFLOAD setting, changed only with the
	// transport's lock held (Notify, Reset).
	offload int
	// resets counts device resets: a frame read before one is dropped,
	// as the tap's offloads may have changed under it.
	resets         atomic.Uint64
	rxKick, txKick chan struct{}
	done           chan struct{}
	closeOnce      sync.Once
	wg             sync.WaitGroup

	rxPackets, rxBytes, txPackets, txBytes atomic.Uint64
	rxDropped, txDropped                   atomic.Uint64
	rxThrottled, txThrottled               atomic.Uint64
	logged                                 atomic.Int32
}

// NewNet returns a network device on tap. It offers checksum and TSO
// offloads only if the tap accepts them (TUNSETOFFLOAD), and leaves the
// tap with none until a driver asks.
func NewNet(tap Tap, cfg NetConfig) (*Net, error) {
	if tap == nil {
		return nil, errors.New("virtio: net: no tap")
	}
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("virtio: net: MAC %q is not 6 bytes", cfg.MAC)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	n := &Net{
		tap: tap, cfg: cfg, now: time.Now,
		features: NetFMAC | NetFMrgRxbuf | NetFStatus,
		rxKick:   make(chan struct{}, 1),
		txKick:   make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if tap.SetOffload(TunFCsum|TunFTSO4|TunFTSO6) == nil {
		n.features |= netOffloads
	}
	if err := tap.SetOffload(0); err != nil {
		return nil, fmt.Errorf("virtio: net: TUNSETOFFLOAD: %w", err)
	}
	n.config = make([]byte, 8) // struct virtio_net_config up to status
	copy(n.config, cfg.MAC)
	binary.LittleEndian.PutUint16(n.config[6:], netStatusLinkUp)
	return n, nil
}

// DeviceID implements Device.
func (n *Net) DeviceID() uint32 { return DeviceIDNet }

// Features implements Device.
func (n *Net) Features() uint64 { return n.features }

// Config implements Device: the MAC and the link status (up).
func (n *Net) Config() []byte { return n.config }

// Serve implements Device; the transport calls Notify instead.
func (n *Net) Serve(Chain) (uint32, error) { return 0, errRing }

// NumQueues implements QueueDevice: receiveq1 and transmitq1.
func (n *Net) NumQueues() int { return 2 }

// Attach implements QueueDevice.
func (n *Net) Attach(t *MMIO) { n.t = t }

// tunOffloads maps the guest's receive offloads to the tap's flags; TSO
// needs checksum offload on both sides.
func tunOffloads(features uint64) int {
	if features&NetFGuestCsum == 0 {
		return 0
	}
	f := TunFCsum
	if features&NetFGuestTSO4 != 0 {
		f |= TunFTSO4
	}
	if features&NetFGuestTSO6 != 0 {
		f |= TunFTSO6
	}
	return f
}

// Notify implements QueueDevice: it wakes the queue's goroutine. The
// first notify after the driver started the device also sets the tap's
// offloads to what the guest accepted (Linux notifies both queues when
// it brings the interface up); until then the tap offloads nothing,
// which any driver takes. TUNSETOFFLOAD is the one system call here
// beyond the runtime's, allowed on vCPU threads (hv/jail).
func (n *Net) Notify(q *Queues, qi int) error {
	n.setOffload(tunOffloads(q.Features()))
	switch qi {
	case netRxQ:
		kick(n.rxKick)
	case netTxQ:
		kick(n.txKick)
	}
	return nil
}

// restored sets the tap's offloads to what the restored driver accepted
// (the tap is a new one) and wakes both goroutines for what the rings
// already hold.
func (n *Net) restored(q *Queues) error {
	n.setOffload(tunOffloads(q.Features()))
	kick(n.rxKick)
	kick(n.txKick)
	return nil
}

// Reset implements QueueDevice.
func (n *Net) Reset() {
	n.resets.Add(1)
	n.setOffload(0)
}

func (n *Net) setOffload(f int) {
	if f == n.offload {
		return
	}
	if err := n.tap.SetOffload(f); err != nil {
		n.logf("TUNSETOFFLOAD %#x: %v", f, err)
		return
	}
	n.offload = f
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Start runs the receive and transmit goroutines until Close.
func (n *Net) Start() {
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.rxLoop() }()
	go func() { defer n.wg.Done(); n.txLoop() }()
}

// Close stops the goroutines and closes the tap.
func (n *Net) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.done)
		err = n.tap.Close()
		n.wg.Wait()
	})
	return err
}

// Stats returns the counters.
func (n *Net) Stats() NetStats {
	return NetStats{
		RxPackets: n.rxPackets.Load(), RxBytes: n.rxBytes.Load(),
		TxPackets: n.txPackets.Load(), TxBytes: n.txBytes.Load(),
		RxDropped: n.rxDropped.Load(), TxDropped: n.txDropped.Load(),
		RxThrottled: n.rxThrottled.Load(), TxThrottled: n.txThrottled.Load(),
	}
}

// logf logs a problem, at most maxLogLines times per device: a guest
// that keeps sending bad frames fills counters, not the log.
func (n *Net) logf(format string, args ...any) {
	switch c := n.logged.Add(1); {
	case c < maxLogLines:
		fmt.Fprintf(n.cfg.Log, "hv: net %s: "+format+"\n", append([]any{n.cfg.MAC}, args...)...)
	case c == maxLogLines:
		fmt.Fprintf(n.cfg.Log, "hv: net %s: further problems are counted, not logged\n", n.cfg.MAC)
	}
}

// wait blocks until c is kicked or the device closes; false if it closed.
func (n *Net) wait(c chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-n.done:
		return false
	}
}

// sleep waits d for the rate limiter; false if the device closed.
func (n *Net) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-n.done:
		return false
	}
}

func (n *Net) closed() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// rxLoop moves frames from the tap to the guest. It reads the next frame
// only once the last is delivered: with no receive buffers it waits for
// the driver's notify, and the frames wait in the tap's queue.
func (n *Net) rxLoop() {
	buf := make([]byte, NetHdrLen+MaxFrame+1) // one more byte shows an oversized frame
	var rx rxState
	lim := newLimiter(n.cfg.Limit, n.now())
	for {
		m, err := n.tap.Read(buf)
		if err != nil {
			if n.closed() || errors.Is(err, os.ErrClosed) {
				return
			}
			n.logf("rx: tap read: %v", err)
			if !n.sleep(100 * time.Millisecond) {
				return
			}
			continue
		}
		if m < NetHdrLen+ethHdrLen || m > NetHdrLen+MaxFrame {
			n.rxDropped.Add(1)
			n.logf("rx: dropped a %d-byte read from the tap", m)
			continue
		}
		pkt := buf[:m]
		epoch := n.resets.Load()
		reserved := false
		for {
			if !reserved {
				if w := lim.reserve(m-NetHdrLen, n.now()); w > 0 {
					n.rxThrottled.Add(1)
					if !n.sleep(w) {
						return
					}
					continue
				}
				reserved = true
			}
			r := rxNoRoom // also when the driver has not started the device
			n.t.Run(func(q *Queues) error {
				if n.resets.Load() != epoch {
					r = rxStale
					return nil
				}
				var err error
				r, err = rx.deliver(n, q, pkt)
				return err
			})
			if r == rxStale {
				n.rxDropped.Add(1) // read under offloads the new driver may not take
				break
			}
			if r != rxNoRoom {
				break
			}
			if !n.wait(n.rxKick) { // until the driver adds buffers
				return
			}
		}
	}
}

type rxResult int

const (
	rxDone rxResult = iota
	rxNoRoom
	rxDropped
	rxStale
)

// rxState is the receive goroutine's scratch space, reused per frame.
type rxState struct {
	segs   [][]byte
	chains []rxChain
}

type rxChain struct {
	head       uint16
	start, end int // its buffers in segs
}

// deliver puts one frame (virtio header included) in the guest's receive
// buffers: one chain, or with MRG_RXBUF as many as it takes, all or
// nothing. It runs under the transport's lock (MMIO.Run); an error means
// the driver broke the protocol and the device needs a reset.
func (rx *rxState) deliver(n *Net, q *Queues, pkt []byte) (rxResult, error) {
	features := q.Features()
	mrg := features&NetFMrgRxbuf != 0
	rx.segs, rx.chains = rx.segs[:0], rx.chains[:0]
	room := 0
	for room < len(pkt) {
		e, ok, err := q.Pop(netRxQ)
		if err != nil {
			return rxNoRoom, err
		}
		if !ok {
			q.Unpop(netRxQ, len(rx.chains))
			return rxNoRoom, nil
		}
		size := size(e.Writable)
		switch {
		case len(e.Readable) > 0:
			n.logf("rx: chain %d has device-readable buffers", e.Head)
			return rxNoRoom, errRing
		case size < NetHdrLen:
			// §5.1.6.3.1: every buffer holds at least a header.
			n.logf("rx: chain %d has %d bytes, less than a header", e.Head, size)
			return rxNoRoom, errRing
		case len(rx.segs)+len(e.Writable) > maxRxSegs || len(rx.chains) == QueueNumMax:
			n.logf("rx: a frame would spread over more than %d buffers", maxRxSegs)
			return rxNoRoom, errRing
		case !mrg && size < len(pkt):
			// The driver promised buffers for the largest frame it
			// negotiated; this one is not. The frame goes, the buffer
			// stays for a smaller one.
			q.Unpop(netRxQ, 1)
			n.rxDropped.Add(1)
			n.logf("rx: dropped a %d-byte frame: the receive buffer holds %d", len(pkt), size)
			return rxDropped, nil
		}
		// The chain's buffer list is reused by the next Pop: keep a copy.
		start := len(rx.segs)
		rx.segs = append(rx.segs, e.Writable...)
		rx.chains = append(rx.chains, rxChain{head: e.Head, start: start, end: len(rx.segs)})
		room += size
	}
	hdr := pkt[:NetHdrLen]
	if features&NetFGuestCsum == 0 {
		hdr[0] &^= netHdrFDataValid // §5.1.6.3.1: only with GUEST_CSUM
	}
	binary.LittleEndian.PutUint16(hdr[10:], uint16(len(rx.chains)))
	rest := pkt
	for _, c := range rx.chains {
		k := 0
		for _, s := range rx.segs[c.start:c.end] {
			m := copy(s, rest)
			rest = rest[m:]
			k += m
		}
		e := Elem{Head: c.head, Chain: Chain{Writable: rx.segs[c.start:c.end]}}
		if err := q.Push(netRxQ, e, uint32(k)); err != nil {
			return rxNoRoom, err
		}
	}
	n.rxPackets.Add(1)
	n.rxBytes.Add(uint64(len(pkt) - NetHdrLen))
	return rxDone, nil
}

// txLoop sends the guest's frames on each transmit notify, waiting on
// the rate limiter when it says so.
func (n *Net) txLoop() {
	var tx txState
	lim := newLimiter(n.cfg.Limit, n.now())
	for n.wait(n.txKick) {
		for {
			var w time.Duration
			more := false
			n.t.Run(func(q *Queues) error {
				var err error
				w, more, err = tx.send(n, q, lim)
				return err
			})
			if w > 0 {
				n.txThrottled.Add(1)
				if !n.sleep(w) {
					return
				}
				continue
			}
			if !more {
				break
			}
		}
	}
}

// txState is the transmit goroutine's scratch space, reused per frame.
type txState struct {
	iov [][]byte
	hdr [NetHdrLen]byte
}

// send writes the available frames to the tap, under the transport's
// lock (MMIO.Run), txIRQBatch at most so that the driver hears of them
// while more come. It returns how long the rate limiter wants it to
// wait, or whether frames are left; an error means the driver broke the
// protocol.
func (tx *txState) send(n *Net, q *Queues, lim *limiter) (wait time.Duration, more bool, err error) {
	features := q.Features()
	for sent := 0; sent < txIRQBatch; sent++ {
		e, ok, err := q.Pop(netTxQ)
		if err != nil || !ok {
			return 0, false, err
		}
		c := e.Chain
		if len(c.Writable) > 0 {
			n.logf("tx: chain %d has device-writable buffers", e.Head)
			return 0, false, errRing
		}
		total := size(c.Readable)
		if total < NetHdrLen+ethHdrLen || total > NetHdrLen+MaxFrame {
			n.txDropped.Add(1)
			n.logf("tx: dropped a %d-byte chain: frames are %d to %d bytes with the header", total, NetHdrLen+ethHdrLen, NetHdrLen+MaxFrame)
			if err := q.Push(netTxQ, e, 0); err != nil {
				return 0, false, err
			}
			continue
		}
		if w := lim.reserve(total-NetHdrLen, n.now()); w > 0 {
			q.Unpop(netTxQ, 1)
			return w, false, nil
		}
		// The tap gets the device's copy of the header, checked, so the
		// guest cannot change it between the check and the write.
		gather(c.Readable, 0, tx.hdr[:])
		if err := checkTxHeader(tx.hdr[:], features, total-NetHdrLen); err != nil {
			n.txDropped.Add(1)
			n.logf("tx: dropped a frame: %v", err)
		} else {
			binary.LittleEndian.PutUint16(tx.hdr[10:], 0) // num_buffers: receive only
			tx.iov = append(tx.iov[:0], tx.hdr[:])
			skip := NetHdrLen
			for _, b := range c.Readable {
				if skip >= len(b) {
					skip -= len(b)
					continue
				}
				tx.iov = append(tx.iov, b[skip:])
				skip = 0
			}
			if _, err := n.tap.Writev(tx.iov); err != nil {
				n.txDropped.Add(1)
				n.logf("tx: tap write: %v", err)
			} else {
				n.txPackets.Add(1)
				n.txBytes.Add(uint64(total - NetHdrLen))
			}
		}
		if err := q.Push(netTxQ, e, 0); err != nil {
			return 0, false, err
		}
	}
	return 0, true, nil
}

// checkTxHeader refuses a transmit header that asks for an offload the
// guest did not negotiate, or points its checksum outside the frame. The
// tap checks GSO itself; this keeps the guest to its own bargain.
func checkTxHeader(h []byte, features uint64, frame int) error {
	flags, gso := h[0], h[1]
	if flags&^netHdrFNeedsCsum != 0 {
		return fmt.Errorf("header flags %#x", flags)
	}
	if flags&netHdrFNeedsCsum != 0 {
		if features&NetFCsum == 0 {
			return errors.New("checksum offload not negotiated")
		}
		start := int(binary.LittleEndian.Uint16(h[6:]))
		off := int(binary.LittleEndian.Uint16(h[8:]))
		if start+off+2 > frame {
			return fmt.Errorf("checksum at %d+%d past the %d-byte frame", start, off, frame)
		}
	}
	switch gso {
	case netGSONone:
	case netGSOTCPv4:
		if features&NetFHostTSO4 == 0 {
			return errors.New("TSO4 not negotiated")
		}
	case netGSOTCPv6:
		if features&NetFHostTSO6 == 0 {
			return errors.New("TSO6 not negotiated")
		}
	default:
		return fmt.Errorf("gso_type %#x", gso)
	}
	return nil
}
