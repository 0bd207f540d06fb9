package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DeviceIDVsock is the virtio device ID of a socket device (virtio 1.2
// §5.10).
const DeviceIDVsock = 19

// The socket device's queues.
const (
	vsockRX    = 0
	vsockTX    = 1
	vsockEvent = 2
)

// The packet header and its values (virtio 1.2 §5.10.6).
const (
	VsockHdrSize    = 44
	VsockHostCID    = 2
	VsockTypeStream = 1

	VsockOpRequest       = 1
	VsockOpResponse      = 2
	VsockOpRST           = 3
	VsockOpShutdown      = 4
	VsockOpRW            = 5
	VsockOpCreditUpdate  = 6
	VsockOpCreditRequest = 7

	VsockShutdownRcv  = 1 // the sender will receive no more data
	VsockShutdownSend = 2 // the sender will send no more data
)

// The device's bounds: everything a guest or a host client can make the
// hv hold is limited by these.
const (
	// VsockMaxPayload is the largest payload in one packet, either way;
	// a guest packet claiming more is answered with RST.
	VsockMaxPayload = 64 << 10
	// VsockBufAlloc is the receive buffer per connection that the hv
	// advertises as buf_alloc: it never holds more guest data for a
	// connection than this, and a guest that sends beyond its credit is
	// reset.
	VsockBufAlloc = 64 << 10
	// VsockMaxConns bounds the connections in every state, host clients
	// still sending their CONNECT line included.
	VsockMaxConns = 64
	// vsockMaxRST bounds the RSTs queued for guest packets that belong
	// to no connection; past it they are dropped, as a guest that sends
	// such packets without posting receive buffers deserves.
	vsockMaxRST = 256
	// vsockConnectTimeout bounds a host client's CONNECT line, the
	// guest's answer to it, and the hv's connect to <uds>_PORT.
	vsockConnectTimeout = 2 * time.Second
	// vsockHostPortBase is the first host-side port given to
	// host-initiated connections; they count up from here.
	vsockHostPortBase = 1 << 30
	vsockLineMax      = 32
)

// vsockHdr is struct virtio_vsock_hdr, little endian and packed.
type vsockHdr struct {
	srcCID, dstCID            uint64
	srcPort, dstPort, len     uint32
	typ, op                   uint16
	flags, bufAlloc, fwdCount uint32
}

func (h *vsockHdr) decode(b []byte) {
	le := binary.LittleEndian
	*h = vsockHdr{
		srcCID: le.Uint64(b[0:]), dstCID: le.Uint64(b[8:]),
		srcPort: le.Uint32(b[16:]), dstPort: le.Uint32(b[20:]), len: le.Uint32(b[24:]),
		typ: le.Uint16(b[28:]), op: le.Uint16(b[30:]),
		flags: le.Uint32(b[32:]), bufAlloc: le.Uint32(b[36:]), fwdCount: le.Uint32(b[40:]),
	}
}

func (h *vsockHdr) encode(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.srcCID)
	le.PutUint64(b[8:], h.dstCID)
	le.PutUint32(b[16:], h.srcPort)
	le.PutUint32(b[20:], h.dstPort)
	le.PutUint32(b[24:], h.len)
	le.PutUint16(b[28:], h.typ)
	le.PutUint16(b[30:], h.op)
	le.PutUint32(b[32:], h.flags)
	le.PutUint32(b[36:], h.bufAlloc)
	le.PutUint32(b[40:], h.fwdCount)
}

// Vsock is a virtio socket device whose host side is Unix sockets, as
// Firecracker's is: a guest connection to host CID 2, port P reaches
// the Unix socket <uds>_P, which the hv connects to; a host client that
// connects to <uds> and writes "CONNECT P\n" is connected to the
// guest's port P and answered "OK <host port>\n" (or the socket is
// closed on refusal). See docs/devices.md.
type Vsock struct {
	cid    uint64
	uds    string
	config []byte
	ln     *net.UnixListener
	t      *MMIO

	mu       sync.Mutex
	cond     *sync.Cond // a connection's credit, buffers or life changed
	conns    map[connKey]*vconn
	pending  int        // host clients not yet past their CONNECT line
	rsts     []vsockHdr // RSTs to send, bounded (vsockMaxRST + VsockMaxConns)
	nextPort uint32
	closed   bool
	// resetEvent: the device was restored from a snapshot, and the
	// driver is yet to hear VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.
	resetEvent bool
}

type connKey struct{ guestPort, hostPort uint32 }

type connState int

const (
	stDialing    connState = iota // the guest asked; the hv connects to <uds>_P
	stRequesting                  // a host client asked; the guest has a REQUEST
	stOpen
)

// vconn is one connection. Its fields are guarded by Vsock.mu.
type vconn struct {
	key   connKey
	state connState
	sock  *net.UnixConn // nil while dialing
	dead  bool
	done  chan struct{} // closed when the connection dies: its socket is closed

	// Guest to host. rxCnt-sentFwd, the most the guest may have sent
	// beyond what it was told was taken, never exceeds VsockBufAlloc.
	greeting        []byte // "OK <port>\n", written to the host before any data
	toHost          []byte // from the guest, not yet taken by the writer
	rxCnt, fwdCnt   uint32 // bytes received from the guest, written to the host
	sentFwd         uint32 // the fwd_cnt the guest last heard
	needCredit      bool
	guestShut       uint32 // the SHUTDOWN flags the guest sent
	hostWriteClosed bool

	// Host to guest: at most one read (VsockMaxPayload) waits here.
	fromHost                  []byte
	txCnt                     uint32 // bytes sent to the guest
	peerBufAlloc, peerFwd     uint32 // the guest's credit, from its last header
	hostEOF, shutSent         bool
	needRequest, needResponse bool
	timer                     *time.Timer // a host-initiated connect's deadline
}

// credit is how many bytes the guest can take now. A guest whose
// fwd_cnt runs ahead of what it was sent gets nothing.
func (c *vconn) credit() uint32 {
	inflight := c.txCnt - c.peerFwd
	if inflight > c.peerBufAlloc {
		return 0
	}
	return c.peerBufAlloc - inflight
}

// MaxUDSPath is the longest host socket path a vsock device takes:
// <uds>_PORT must fit sun_path (108 bytes with its NUL) for every
// 32-bit port, or a guest's connect would fail for some ports only.
const MaxUDSPath = 107 - len("_4294967295")

// NewVsock returns a socket device for guest CID cid whose host side is
// ln, listening on the Unix socket uds, and the sockets uds_PORT. It
// accepts host clients only once Start is called, and closes ln on
// Close.
func NewVsock(cid uint64, uds string, ln *net.UnixListener) (*Vsock, error) {
	if cid < 3 || cid >= 0xffffffff {
		return nil, fmt.Errorf("virtio: vsock cid %d: want 3 to %d", cid, uint32(0xfffffffe))
	}
	if uds == "" || ln == nil {
		return nil, errors.New("virtio: vsock needs a Unix socket and its path")
	}
	d := &Vsock{cid: cid, uds: uds, ln: ln, conns: map[connKey]*vconn{}, config: make([]byte, 8)}
	d.cond = sync.NewCond(&d.mu)
	binary.LittleEndian.PutUint64(d.config, cid)
	return d, nil
}

// DeviceID implements Device.
func (d *Vsock) DeviceID() uint32 { return DeviceIDVsock }

// Features implements Device: stream sockets only, which needs no bit.
func (d *Vsock) Features() uint64 { return 0 }

// Config implements Device: struct virtio_vsock_config, the guest CID.
func (d *Vsock) Config() []byte { return d.config }

// Serve implements Device; the transport calls Notify instead.
func (d *Vsock) Serve(Chain) (uint32, error) { return 0, errRing }

// NumQueues implements QueueDevice: rx, tx, event.
func (d *Vsock) NumQueues() int { return 3 }

// Attach implements QueueDevice.
func (d *Vsock) Attach(t *MMIO) { d.t = t }

// Start accepts host clients on the Unix socket until Close.
func (d *Vsock) Start() { go d.accept() }

// Close ends every connection and closes and removes the Unix socket.
func (d *Vsock) Close() error {
	d.mu.Lock()
	d.closed = true
	for _, c := range d.conns {
		d.kill(c, false)
	}
	d.mu.Unlock()
	return d.ln.Close()
}

// Reset implements QueueDevice: the driver is gone, and so is every
// connection.
func (d *Vsock) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		d.kill(c, false)
	}
	d.rsts = nil
	d.resetEvent = false // a new driver has heard of nothing to reset
}

// VsockEventTransportReset is VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: the
// driver drops every connection and reads the guest CID again.
const VsockEventTransportReset = 0

// restored implements restorer. Connections do not survive a snapshot,
// as in Firecracker: the guest learns so from a transport-reset event,
// sent now if the driver left a buffer on the event queue, else on its
// next notify.
func (d *Vsock) restored(q *Queues) error {
	d.mu.Lock()
	d.resetEvent = true
	d.mu.Unlock()
	return d.sendResetEvent(q)
}

func (d *Vsock) sendResetEvent(q *Queues) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.resetEvent {
		return nil
	}
	e, ok, err := q.Pop(vsockEvent)
	if err != nil || !ok {
		return err
	}
	if size(e.Writable) < 4 {
		return errRing // struct virtio_vsock_event is a le32
	}
	var ev [4]byte // the id, VsockEventTransportReset
	scatterAt(e.Writable, 0, ev[:])
	d.resetEvent = false
	return q.Push(vsockEvent, e, uint32(len(ev)))
}

// Notify implements QueueDevice. It runs on a vCPU thread: it moves
// bytes between guest memory and the connections' buffers and wakes
// their goroutines, which do the socket I/O.
func (d *Vsock) Notify(q *Queues, qi int) error {
	if err := d.sendResetEvent(q); err != nil {
		return err
	}
	if qi == vsockTX {
		if err := d.drainTX(q); err != nil {
			return err
		}
	}
	// New receive buffers, or answers to what the guest sent; the event
	// queue's buffers are used only after a restore (sendResetEvent).
	return d.fill(q)
}

func (d *Vsock) drainTX(q *Queues) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		e, ok, err := q.Pop(vsockTX)
		if err != nil || !ok {
			return err
		}
		if err := d.recv(e.Readable); err != nil {
			return err
		}
		if err := q.Push(vsockTX, e, 0); err != nil {
			return err
		}
	}
}

// recv handles one packet from the guest. Only a chain too short for a
// header is an error (the driver broke the ring); a bad packet is
// answered with RST.
func (d *Vsock) recv(bufs [][]byte) error {
	var raw [VsockHdrSize]byte
	if gather(bufs, 0, raw[:]) != len(raw) {
		return errRing
	}
	var h vsockHdr
	h.decode(raw[:])
	if h.srcCID != d.cid {
		return nil // not from this guest's address: dropped, as Firecracker does
	}
	key := connKey{guestPort: h.srcPort, hostPort: h.dstPort}
	c := d.conns[key]
	bad := h.dstCID != VsockHostCID || h.typ != VsockTypeStream ||
		h.len > VsockMaxPayload || uint64(h.len) > uint64(size(bufs)-VsockHdrSize)
	if c == nil || bad {
		switch {
		case c != nil:
			d.kill(c, h.op != VsockOpRST)
		case h.op == VsockOpRequest && !bad:
			d.guestConnect(h)
		case h.op != VsockOpRST:
			d.queueRST(h)
		}
		return nil
	}
	c.peerBufAlloc, c.peerFwd = h.bufAlloc, h.fwdCount
	d.cond.Broadcast()
	switch h.op {
	case VsockOpResponse:
		if c.state != stRequesting {
			d.kill(c, true)
			return nil
		}
		c.state = stOpen
		c.timer.Stop()
		c.greeting = fmt.Appendf(nil, "OK %d\n", c.key.hostPort)
	case VsockOpRST:
		d.kill(c, false)
		return nil
	case VsockOpShutdown:
		c.guestShut |= h.flags & (VsockShutdownRcv | VsockShutdownSend)
		if c.guestShut&VsockShutdownRcv != 0 {
			c.fromHost = nil
		}
	case VsockOpRW:
		// The guest's credit is what the hv last told it: buf_alloc past
		// the fwd_cnt in its last packet. So rxCnt-sentFwd, and with it
		// the bytes held (rxCnt-fwdCnt), never exceeds VsockBufAlloc.
		if c.state != stOpen || h.len > VsockBufAlloc-(c.rxCnt-c.sentFwd) {
			d.kill(c, true) // data before the connection is open, or beyond its credit
			return nil
		}
		n := len(c.toHost)
		c.toHost = slices.Grow(c.toHost, int(h.len))[:n+int(h.len)]
		gather(bufs, VsockHdrSize, c.toHost[n:])
		c.rxCnt += h.len
	case VsockOpCreditUpdate:
	case VsockOpCreditRequest:
		c.needCredit = true
	default:
		d.kill(c, true) // a second REQUEST, or an op that does not exist
		return nil
	}
	d.settle(c)
	return nil
}

// settle ends a connection both sides have finished with: the guest has
// shut down both ways, or it will send no more and the host has closed,
// and everything the guest sent has reached the host. Linux waits for
// the peer's RST after a full SHUTDOWN, so one is sent.
func (d *Vsock) settle(c *vconn) {
	if c.dead || c.rxCnt != c.fwdCnt || c.guestShut&VsockShutdownSend == 0 {
		return
	}
	if c.guestShut&VsockShutdownRcv != 0 || c.shutSent {
		d.kill(c, true)
	}
}

// kill ends c, queueing an RST for the guest if rst. Its goroutines see
// done and close its socket: kill may run on a vCPU thread, where close
// is not allowed.
func (d *Vsock) kill(c *vconn, rst bool) {
	if c.dead {
		return
	}
	c.dead = true
	delete(d.conns, c.key)
	close(c.done)
	if c.timer != nil {
		c.timer.Stop()
	}
	if rst && !d.closed {
		// One per connection at most, so this cannot exceed its bound.
		d.rsts = append(d.rsts, d.hdrFor(c, VsockOpRST, 0))
	}
	d.cond.Broadcast()
}

// queueRST answers a packet that belongs to no connection.
func (d *Vsock) queueRST(h vsockHdr) {
	if len(d.rsts) >= vsockMaxRST {
		return
	}
	d.rsts = append(d.rsts, vsockHdr{
		srcCID: VsockHostCID, dstCID: d.cid, srcPort: h.dstPort, dstPort: h.srcPort,
		typ: VsockTypeStream, op: VsockOpRST,
	})
}

func (d *Vsock) hdrFor(c *vconn, op uint16, flags uint32) vsockHdr {
	return vsockHdr{
		srcCID: VsockHostCID, dstCID: d.cid, srcPort: c.key.hostPort, dstPort: c.key.guestPort,
		typ: VsockTypeStream, op: op, flags: flags, bufAlloc: VsockBufAlloc, fwdCount: c.fwdCnt,
	}
}

// guestConnect starts the hv's connect to <uds>_PORT for a guest REQUEST.
func (d *Vsock) guestConnect(h vsockHdr) {
	if d.closed || len(d.conns)+d.pending >= VsockMaxConns {
		d.queueRST(h)
		return
	}
	key := connKey{guestPort: h.srcPort, hostPort: h.dstPort}
	c := &vconn{key: key, state: stDialing, done: make(chan struct{}), peerBufAlloc: h.bufAlloc, peerFwd: h.fwdCount}
	d.conns[key] = c
	go d.dial(c)
}

func (d *Vsock) dial(c *vconn) {
	dl := net.Dialer{Timeout: vsockConnectTimeout}
	s, err := dl.Dial("unix", d.uds+"_"+strconv.FormatUint(uint64(c.key.hostPort), 10))
	d.mu.Lock()
	switch {
	case err != nil:
		d.kill(c, true) // nobody listens: the guest's connect is refused
	case c.dead:
		s.Close()
	default:
		c.sock = s.(*net.UnixConn)
		c.state = stOpen
		c.needResponse = true
		d.run(c)
	}
	d.mu.Unlock()
	d.t.Run(d.fill)
}

// run starts c's goroutines: the reader (host to guest), the writer
// (guest to host) and the one that closes the socket when c dies.
func (d *Vsock) run(c *vconn) {
	go func() {
		<-c.done
		c.sock.Close()
	}()
	go d.reader(c)
	go d.writer(c)
}

func (d *Vsock) reader(c *vconn) {
	buf := make([]byte, VsockMaxPayload)
	for {
		d.mu.Lock()
		for !c.dead && (c.state != stOpen || len(c.fromHost) > 0 || c.credit() == 0) &&
			c.guestShut&VsockShutdownRcv == 0 {
			d.cond.Wait()
		}
		if c.dead || c.guestShut&VsockShutdownRcv != 0 {
			d.mu.Unlock()
			return
		}
		n := min(int(c.credit()), len(buf))
		d.mu.Unlock()

		m, err := c.sock.Read(buf[:n])
		d.mu.Lock()
		if !c.dead && c.guestShut&VsockShutdownRcv == 0 {
			c.fromHost = append(c.fromHost[:0], buf[:m]...)
			switch {
			case errors.Is(err, io.EOF):
				c.hostEOF = true
			case err != nil:
				d.kill(c, true)
			}
		}
		stop := c.dead || c.hostEOF
		d.mu.Unlock()
		d.t.Run(d.fill)
		if stop {
			return
		}
	}
}

func (d *Vsock) writer(c *vconn) {
	var buf []byte
	for {
		d.mu.Lock()
		for !c.dead && len(c.greeting) == 0 && len(c.toHost) == 0 && !c.wantCloseWrite() {
			d.cond.Wait()
		}
		if c.dead {
			d.mu.Unlock()
			return
		}
		data := false
		closeWrite := false
		switch {
		case len(c.greeting) > 0:
			buf = append(buf[:0], c.greeting...)
			c.greeting = nil
		case len(c.toHost) > 0:
			buf = append(buf[:0], c.toHost...)
			c.toHost = c.toHost[:0]
			data = true
		default:
			c.hostWriteClosed = true
			closeWrite = true
		}
		d.mu.Unlock()

		var err error
		if closeWrite {
			err = c.sock.CloseWrite()
		} else {
			_, err = c.sock.Write(buf)
		}
		d.mu.Lock()
		switch {
		case err != nil:
			d.kill(c, true)
		case data:
			c.fwdCnt += uint32(len(buf))
			// Tell the guest about the room once what it believes it has
			// falls under half the buffer; any packet carries fwd_cnt.
			if VsockBufAlloc-(c.rxCnt-c.sentFwd) < VsockBufAlloc/2 {
				c.needCredit = true
			}
			d.settle(c)
		}
		d.mu.Unlock()
		d.t.Run(d.fill)
	}
}

// wantCloseWrite: the guest will send no more and the host has it all.
func (c *vconn) wantCloseWrite() bool {
	return c.guestShut&VsockShutdownSend != 0 && !c.hostWriteClosed && c.rxCnt == c.fwdCnt
}

// fill delivers what waits for the guest into its receive buffers:
// RSTs first, then each connection's REQUEST or RESPONSE, data within
// the guest's credit, credit updates and SHUTDOWN.
func (d *Vsock) fill(q *Queues) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var raw [VsockHdrSize]byte
	for {
		var h vsockHdr
		var c *vconn
		if len(d.rsts) > 0 {
			h = d.rsts[0]
		} else if c = d.nextConn(); c == nil {
			return nil
		}
		e, ok, err := q.Pop(vsockRX)
		if err != nil || !ok {
			return err
		}
		room := size(e.Writable) - VsockHdrSize
		if room < 0 {
			return errRing // a receive buffer with no room for a header
		}
		var payload []byte
		if c == nil {
			d.rsts = d.rsts[1:]
		} else {
			h, payload = d.packetFor(c, room)
		}
		h.encode(raw[:])
		scatterAt(e.Writable, 0, raw[:])
		scatterAt(e.Writable, VsockHdrSize, payload)
		if err := q.Push(vsockRX, e, uint32(VsockHdrSize+len(payload))); err != nil {
			return err
		}
	}
}

// nextConn is a connection with a packet to send, if any.
func (d *Vsock) nextConn() *vconn {
	for _, c := range d.conns {
		if c.needRequest || c.needResponse || c.needCredit ||
			c.state == stOpen && len(c.fromHost) > 0 && c.credit() > 0 ||
			c.state == stOpen && c.hostEOF && len(c.fromHost) == 0 && !c.shutSent {
			return c
		}
	}
	return nil
}

// packetFor takes c's next packet, its payload at most room bytes.
func (d *Vsock) packetFor(c *vconn, room int) (vsockHdr, []byte) {
	var h vsockHdr
	var payload []byte
	switch {
	case c.needRequest:
		c.needRequest = false
		h = d.hdrFor(c, VsockOpRequest, 0)
	case c.needResponse:
		c.needResponse = false
		h = d.hdrFor(c, VsockOpResponse, 0)
	case c.state == stOpen && len(c.fromHost) > 0 && c.credit() > 0 && room > 0:
		n := min(len(c.fromHost), room, int(c.credit()))
		payload = c.fromHost[:n]
		c.fromHost = c.fromHost[n:]
		c.txCnt += uint32(n)
		h = d.hdrFor(c, VsockOpRW, 0)
		h.len = uint32(n)
		if len(c.fromHost) == 0 {
			d.cond.Broadcast() // the reader may read again
		}
	case c.state == stOpen && c.hostEOF && len(c.fromHost) == 0 && !c.shutSent:
		c.shutSent = true
		h = d.hdrFor(c, VsockOpShutdown, VsockShutdownSend)
		d.settle(c)
	default:
		// A credit update, asked for or not: also what a receive buffer
		// with no room past the header gets.
		h = d.hdrFor(c, VsockOpCreditUpdate, 0)
	}
	c.needCredit = false // every header carries buf_alloc and fwd_cnt
	c.sentFwd = c.fwdCnt
	return h, payload
}

func (d *Vsock) accept() {
	for {
		s, err := d.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of fds, say: do not spin
			continue
		}
		d.mu.Lock()
		if d.closed || len(d.conns)+d.pending >= VsockMaxConns {
			d.mu.Unlock()
			s.Close()
			continue
		}
		d.pending++
		d.mu.Unlock()
		go d.handshake(s)
	}
}

// handshake reads a host client's "CONNECT PORT\n" and asks the guest.
func (d *Vsock) handshake(s *net.UnixConn) {
	s.SetReadDeadline(time.Now().Add(vsockConnectTimeout))
	line, err := readLine(s, vsockLineMax)
	port, ok := parseConnect(line)
	if err != nil || !ok || s.SetReadDeadline(time.Time{}) != nil {
		ok = false
	}
	d.mu.Lock()
	d.pending--
	if !ok || d.closed {
		d.mu.Unlock()
		s.Close()
		return
	}
	key := connKey{guestPort: port, hostPort: d.allocPort(port)}
	c := &vconn{key: key, state: stRequesting, sock: s, done: make(chan struct{}), needRequest: true}
	d.conns[key] = c
	c.timer = time.AfterFunc(vsockConnectTimeout, func() {
		d.mu.Lock()
		if c.state == stRequesting {
			d.kill(c, true) // the guest never answered
		}
		d.mu.Unlock()
		d.t.Run(d.fill)
	})
	d.run(c)
	d.mu.Unlock()
	d.t.Run(d.fill)
}

// allocPort picks a host-side port no connection to guest port uses.
func (d *Vsock) allocPort(guestPort uint32) uint32 {
	for {
		p := vsockHostPortBase + d.nextPort%vsockHostPortBase
		d.nextPort++
		if d.conns[connKey{guestPort, p}] == nil {
			return p // at most VsockMaxConns ports are taken
		}
	}
}

// readLine reads up to max bytes through a newline one byte at a time,
// so that nothing after the line is consumed: it is the guest's data.
func readLine(r io.Reader, max int) (string, error) {
	var b [1]byte
	var line []byte
	for len(line) < max {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", errors.New("virtio: vsock: CONNECT line too long")
}

// parseConnect parses "CONNECT PORT", PORT in decimal.
func parseConnect(line string) (uint32, bool) {
	ps, ok := strings.CutPrefix(line, "CONNECT ")
	if !ok || ps == "" || strings.TrimLeft(ps, "0123456789") != "" {
		return 0, false
	}
	p, err := strconv.ParseUint(ps, 10, 32)
	return uint32(p), err == nil
}

// scatterAt copies src into bufs from byte off on.
func scatterAt(bufs [][]byte, off int, src []byte) {
	for _, b := range bufs {
		if len(src) == 0 {
			return
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		src = src[copy(b[off:], src):]
		off = 0
	}
}
