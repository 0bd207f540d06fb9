package virtio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vsockRig is a fake guest driver for the socket device: three queues
// of vqSize in test RAM, receive buffers of rxBufSize (a 44-byte header
// descriptor and a payload descriptor, as Linux 6.1 posts them) and
// transmit chains of a header and a payload descriptor.
type vsockRig struct {
	t     testing.TB
	mem   ram
	track *tracked
	dev   *MMIO
	vs    *Vsock
	uds   string
	cid   uint64
	irqs  int
	irq   chan struct{} // a token each time the line goes high

	avail    [3]uint16
	seenUsed [3]uint16
	txNext   int
	backlog  []rxPkt // received, not yet expected
}

const (
	vqSize    = 16
	rxBufSize = 4096
	rxBufAt   = 0x80000 // vqSize receive buffers, header then payload
	txBufAt   = 0xc0000 // vqSize/2 transmit packets of up to 64 KiB + header
	txSlot    = 0x11000
)

func vqDesc(q int) uint64  { return uint64(0x10000 * (q + 1)) }
func vqAvail(q int) uint64 { return vqDesc(q) + 0x1000 }
func vqUsed(q int) uint64  { return vqDesc(q) + 0x2000 }

func newVsockRig(t testing.TB) *vsockRig {
	t.Helper()
	// Unix socket paths are limited to 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "vsk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tr := newTracked(2 << 20)
	r := &vsockRig{t: t, mem: tr.ram, track: tr, uds: filepath.Join(dir, "v.sock"), cid: 7, irq: make(chan struct{}, 1)}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: r.uds, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	r.vs, err = NewVsock(r.cid, r.uds, ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.vs.Close() })
	r.dev, err = NewMMIO(tr, r.vs, func(l bool) {
		if l {
			r.irqs++
			select {
			case r.irq <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	r.vs.Start()
	r.init()
	return r
}

func (r *vsockRig) w32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	r.dev.Write(off, b[:])
}

func (r *vsockRig) r32(off uint64) uint32 {
	var b [4]byte
	r.dev.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// locked runs f with the transport's lock: the device's goroutines write
// guest memory under it.
func (r *vsockRig) locked(f func()) {
	r.dev.mu.Lock()
	defer r.dev.mu.Unlock()
	f()
}

func (r *vsockRig) init() {
	r.w32(RegStatus, 0)
	r.w32(RegStatus, StatusAcknowledge|StatusDriver)
	r.w32(RegDriverFeatSel, 1)
	r.w32(RegDriverFeatures, 1)
	r.w32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	for q := 0; q < 3; q++ {
		r.w32(RegQueueSel, uint32(q))
		r.w32(RegQueueNum, vqSize)
		r.w32(RegQueueDescLow, uint32(vqDesc(q)))
		r.w32(RegQueueDriverLow, uint32(vqAvail(q)))
		r.w32(RegQueueDeviceLow, uint32(vqUsed(q)))
		r.w32(RegQueueReady, 1)
	}
	r.w32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	r.avail, r.seenUsed, r.txNext = [3]uint16{}, [3]uint16{}, 0
}

func (r *vsockRig) setDesc(q, i int, addr uint64, length uint32, flags, next uint16) {
	d := r.mem[vqDesc(q)+16*uint64(i):]
	binary.LittleEndian.PutUint64(d, addr)
	binary.LittleEndian.PutUint32(d[8:], length)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

// offer makes head available on queue q, without notifying.
func (r *vsockRig) offer(q int, head uint16) {
	binary.LittleEndian.PutUint16(r.mem[vqAvail(q)+4+2*uint64(r.avail[q]%vqSize):], head)
	r.avail[q]++
	binary.LittleEndian.PutUint16(r.mem[vqAvail(q)+2:], r.avail[q])
}

// postRX offers n receive buffers (n <= vqSize/2: each takes two
// descriptors) and notifies.
func (r *vsockRig) postRX(n int) {
	r.locked(func() {
		for i := 0; i < n; i++ {
			slot := int(r.avail[vsockRX]) % (vqSize / 2)
			buf := uint64(rxBufAt + slot*(rxBufSize+VsockHdrSize))
			r.setDesc(vsockRX, 2*slot, buf, VsockHdrSize, descFWrite|descFNext, uint16(2*slot+1))
			r.setDesc(vsockRX, 2*slot+1, buf+VsockHdrSize, rxBufSize, descFWrite, 0)
			r.offer(vsockRX, uint16(2*slot))
		}
	})
	r.w32(RegQueueNotify, vsockRX)
}

// send transmits one packet; h.len, if set, is what the header claims
// (by default len(payload)), payload what the chain holds.
func (r *vsockRig) send(h vsockHdr, payload []byte) {
	r.offerTX(h, payload)
	r.w32(RegQueueNotify, vsockTX)
}

// offerTX makes a packet available on tx without notifying: several
// then reach the device in one notify.
func (r *vsockRig) offerTX(h vsockHdr, payload []byte) {
	if h.len == 0 {
		h.len = uint32(len(payload))
	}
	r.locked(func() {
		slot := r.txNext % (vqSize / 2)
		r.txNext++
		buf := uint64(txBufAt + slot*txSlot)
		h.encode(r.mem[buf:])
		copy(r.mem[buf+VsockHdrSize:], payload)
		if len(payload) > 0 {
			r.setDesc(vsockTX, 2*slot, buf, VsockHdrSize, descFNext, uint16(2*slot+1))
			r.setDesc(vsockTX, 2*slot+1, buf+VsockHdrSize, uint32(len(payload)), 0, 0)
		} else {
			r.setDesc(vsockTX, 2*slot, buf, VsockHdrSize, 0, 0)
		}
		r.offer(vsockTX, uint16(2*slot))
	})
}

// gh is a header from the guest, with a generous credit.
func (r *vsockRig) gh(op uint16, guestPort, hostPort uint32) vsockHdr {
	return vsockHdr{srcCID: r.cid, dstCID: VsockHostCID, srcPort: guestPort, dstPort: hostPort,
		typ: VsockTypeStream, op: op, bufAlloc: 1 << 20}
}

type rxPkt struct {
	h       vsockHdr
	payload []byte
}

// received returns the packets the device has put in receive buffers
// since the last call.
func (r *vsockRig) received() []rxPkt {
	var out []rxPkt
	r.locked(func() {
		usedIdx := binary.LittleEndian.Uint16(r.mem[vqUsed(vsockRX)+2:])
		for r.seenUsed[vsockRX] != usedIdx {
			e := r.mem[vqUsed(vsockRX)+4+8*uint64(r.seenUsed[vsockRX]%vqSize):]
			head, n := binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
			r.seenUsed[vsockRX]++
			buf := uint64(rxBufAt + int(head/2)*(rxBufSize+VsockHdrSize))
			if n < VsockHdrSize || n > VsockHdrSize+rxBufSize {
				r.t.Errorf("used length %d", n)
				continue
			}
			var p rxPkt
			p.h.decode(r.mem[buf:])
			p.payload = bytes.Clone(r.mem[buf+VsockHdrSize : buf+uint64(n)])
			if int(p.h.len) != len(p.payload) {
				r.t.Errorf("header len %d, %d bytes used", p.h.len, len(p.payload))
			}
			out = append(out, p)
		}
	})
	return out
}

// expect waits for the next packet, reposting the receive buffer.
func (r *vsockRig) expect(op uint16) rxPkt {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ps := r.received()
		r.backlog = append(r.backlog, ps...)
		if len(ps) > 0 {
			r.postRX(len(ps))
		}
		if len(r.backlog) > 0 {
			p := r.backlog[0]
			r.backlog = r.backlog[1:]
			if p.h.op != op {
				r.t.Fatalf("got op %d (%+v), want %d", p.h.op, p.h, op)
			}
			return p
		}
		time.Sleep(time.Millisecond)
	}
	r.t.Fatalf("no packet with op %d within 5 s", op)
	return rxPkt{}
}

// quiet checks that nothing arrives for a while.
func (r *vsockRig) quiet(d time.Duration) {
	r.t.Helper()
	time.Sleep(d)
	if ps := append(r.backlog, r.received()...); len(ps) > 0 {
		r.t.Fatalf("unexpected packet op %d: %+v", ps[0].h.op, ps[0].h)
	}
}

func (r *vsockRig) listen(port uint32) *net.UnixListener {
	r.t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("%s_%d", r.uds, port), Net: "unix"})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { ln.Close() })
	return ln
}

func accept(t testing.TB, ln *net.UnixListener) *net.UnixConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readN(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes from the host socket: %v", n, err)
	}
	return b
}

func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if n, err := c.Read(b[:]); err != io.EOF {
		t.Fatalf("host socket: read %d bytes, %v; want EOF", n, err)
	}
}

// waitFwd waits up to 5 s until the connection key has written n bytes
// from the guest to its host socket.
func (r *vsockRig) waitFwd(key connKey, n uint32) {
	r.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		r.vs.mu.Lock()
		c := r.vs.conns[key]
		got := uint32(0)
		if c != nil {
			got = c.fwdCnt
		}
		r.vs.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("connection %+v: %d bytes written to the host, want %d", key, got, n)
		}
	}
}

// open makes a guest-initiated connection from guestPort to a listener
// on hostPort and returns the host's end.
func (r *vsockRig) open(ln *net.UnixListener, guestPort, hostPort uint32) *net.UnixConn {
	r.t.Helper()
	r.send(r.gh(VsockOpRequest, guestPort, hostPort), nil)
	s := accept(r.t, ln)
	p := r.expect(VsockOpResponse)
	if p.h.srcPort != hostPort || p.h.dstPort != guestPort || p.h.dstCID != r.cid || p.h.srcCID != VsockHostCID {
		r.t.Fatalf("RESPONSE header %+v", p.h)
	}
	return s
}

func TestVsockIdentity(t *testing.T) {
	r := newVsockRig(t)
	if r.r32(RegDeviceID) != DeviceIDVsock {
		t.Fatalf("device ID %d", r.r32(RegDeviceID))
	}
	var cfg [8]byte
	r.dev.Read(RegConfig, cfg[:])
	if binary.LittleEndian.Uint64(cfg[:]) != r.cid {
		t.Errorf("guest_cid %x", cfg)
	}
	for q, want := range []uint32{QueueNumMax, QueueNumMax, QueueNumMax, 0} {
		r.w32(RegQueueSel, uint32(q))
		if got := r.r32(RegQueueNumMax); got != want {
			t.Errorf("queue %d: QueueNumMax %d, want %d", q, got, want)
		}
	}
	for _, cid := range []uint64{0, 1, 2, 0xffffffff, 1 << 40} {
		if _, err := NewVsock(cid, r.uds, r.vs.ln); err == nil {
			t.Errorf("cid %d accepted", cid)
		}
	}
}

func TestVsockGuestToHost(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(4)
	ln := r.listen(5000)
	s := r.open(ln, 1234, 5000)

	r.send(r.gh(VsockOpRW, 1234, 5000), []byte("hello host"))
	if got := readN(t, s, 10); string(got) != "hello host" {
		t.Fatalf("host read %q", got)
	}
	// The host can read the bytes before the device's writer counts
	// them (CI saw fwd_cnt 0 below): wait for the count, not the read.
	r.waitFwd(connKey{guestPort: 1234, hostPort: 5000}, 10)
	s.Write([]byte("hello guest"))
	p := r.expect(VsockOpRW)
	if string(p.payload) != "hello guest" || p.h.srcPort != 5000 || p.h.dstPort != 1234 {
		t.Fatalf("guest got %q in %+v", p.payload, p.h)
	}
	if p.h.bufAlloc != VsockBufAlloc || p.h.fwdCount != 10 {
		t.Errorf("buf_alloc %d fwd_cnt %d, want %d and 10", p.h.bufAlloc, p.h.fwdCount, VsockBufAlloc)
	}
	// The guest closes: both directions shut, the host sees EOF, the
	// guest gets the RST Linux waits for.
	h := r.gh(VsockOpShutdown, 1234, 5000)
	h.flags = VsockShutdownRcv | VsockShutdownSend
	r.send(h, nil)
	expectEOF(t, s)
	r.expect(VsockOpRST)
}

func TestVsockGuestHalfClose(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(4)
	ln := r.listen(5001)
	s := r.open(ln, 99, 5001)
	r.send(r.gh(VsockOpRW, 99, 5001), []byte("request"))
	h := r.gh(VsockOpShutdown, 99, 5001)
	h.flags = VsockShutdownSend
	r.send(h, nil)
	all, err := io.ReadAll(s)
	if err != nil || string(all) != "request" {
		t.Fatalf("host read %q, %v", all, err)
	}
	// The host can still answer; then it closes and the guest learns it.
	s.Write([]byte("answer"))
	if p := r.expect(VsockOpRW); string(p.payload) != "answer" {
		t.Fatalf("guest got %q", p.payload)
	}
	s.Close()
	if p := r.expect(VsockOpShutdown); p.h.flags != VsockShutdownSend {
		t.Fatalf("SHUTDOWN flags %d", p.h.flags)
	}
	r.expect(VsockOpRST) // both sides are done
}

func TestVsockGuestConnectRefused(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(2)
	r.send(r.gh(VsockOpRequest, 40000, 6000), nil) // nobody listens on uds_6000
	p := r.expect(VsockOpRST)
	if p.h.srcPort != 6000 || p.h.dstPort != 40000 || p.h.dstCID != r.cid {
		t.Fatalf("RST header %+v", p.h)
	}
}

// hostConnect connects a host client to guest port and returns it with
// the REQUEST the guest got.
func (r *vsockRig) hostConnect(port uint32) (*net.UnixConn, rxPkt) {
	r.t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: r.uds, Net: "unix"})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %d\n", port)
	p := r.expect(VsockOpRequest)
	if p.h.dstPort != port || p.h.srcPort < vsockHostPortBase || p.h.dstCID != r.cid {
		r.t.Fatalf("REQUEST header %+v", p.h)
	}
	return c, p
}

func TestVsockHostToGuest(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(4)
	c, req := r.hostConnect(1024)
	hp := req.h.srcPort
	r.send(r.gh(VsockOpResponse, 1024, hp), nil)
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || line != fmt.Sprintf("OK %d\n", hp) {
		t.Fatalf("handshake answer %q, %v", line, err)
	}
	c.Write([]byte("interface\n"))
	if p := r.expect(VsockOpRW); string(p.payload) != "interface\n" || p.h.srcPort != hp || p.h.dstPort != 1024 {
		t.Fatalf("guest got %q in %+v", p.payload, p.h)
	}
	r.send(r.gh(VsockOpRW, 1024, hp), []byte("1.2\n"))
	if line, err := br.ReadString('\n'); err != nil || line != "1.2\n" {
		t.Fatalf("host read %q, %v", line, err)
	}
	c.CloseWrite()
	if p := r.expect(VsockOpShutdown); p.h.flags != VsockShutdownSend {
		t.Fatalf("SHUTDOWN flags %d", p.h.flags)
	}
}

func TestVsockHostConnectRefused(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(4)
	c, req := r.hostConnect(77)
	r.send(r.gh(VsockOpRST, 77, req.h.srcPort), nil)
	expectEOF(t, c)
	r.quiet(50 * time.Millisecond) // no RST answers an RST

	// A line that is not CONNECT, or a port out of range: closed unanswered.
	for _, line := range []string{"HELLO\n", "CONNECT 4294967296\n", "CONNECT -1\n", "CONNECT \n", strings.Repeat("9", 40) + "\n"} {
		c, err := net.Dial("unix", r.uds)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(line))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%q: read %d bytes, %v; want the socket closed", line, n, err)
		}
		c.Close()
	}
	r.quiet(50 * time.Millisecond)
}

// TestVsockHostConnectTimeout: a guest that never answers a REQUEST.
func TestVsockHostConnectTimeout(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(4)
	c, _ := r.hostConnect(5)
	start := time.Now()
	expectEOF(t, c)
	if d := time.Since(start); d < vsockConnectTimeout/2 {
		t.Errorf("closed after %v, before the timeout", d)
	}
	r.expect(VsockOpRST)
}

// TestVsockCreditToGuest: the hv sends the guest no more than its
// buf_alloc - (tx_cnt - fwd_cnt), and resumes on CREDIT_UPDATE.
func TestVsockCreditToGuest(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(4)
	ln := r.listen(5002)
	h := r.gh(VsockOpRequest, 50, 5002)
	h.bufAlloc = 100
	r.send(h, nil)
	s := accept(t, ln)
	r.expect(VsockOpResponse)
	data := bytes.Repeat([]byte("0123456789"), 30)
	s.Write(data)
	var got []byte
	for len(got) < 100 {
		got = append(got, r.expect(VsockOpRW).payload...)
	}
	if len(got) != 100 {
		t.Fatalf("guest got %d bytes with a credit of 100", len(got))
	}
	r.quiet(100 * time.Millisecond)
	// The guest consumed 60: room for 60 more.
	u := r.gh(VsockOpCreditUpdate, 50, 5002)
	u.bufAlloc, u.fwdCount = 100, 60
	r.send(u, nil)
	for len(got) < 160 {
		got = append(got, r.expect(VsockOpRW).payload...)
	}
	if len(got) != 160 {
		t.Fatalf("guest got %d bytes, want 160", len(got))
	}
	r.quiet(100 * time.Millisecond)
	// A fwd_cnt beyond what was sent gives no credit at all.
	u.fwdCount = 1000
	r.send(u, nil)
	r.quiet(100 * time.Millisecond)
	u.bufAlloc, u.fwdCount = 1000, 160
	r.send(u, nil)
	for len(got) < 300 {
		got = append(got, r.expect(VsockOpRW).payload...)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("guest got %q", got)
	}
}

// TestVsockCreditFromGuest: the hv advertises its buffer, tells the
// guest unasked when the host has taken its data, answers
// CREDIT_REQUEST, and resets a guest that sends beyond its credit
// without ever holding more than it advertised.
func TestVsockCreditFromGuest(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(4)
	ln := r.listen(5003)
	s := r.open(ln, 51, 5003)
	chunk := bytes.Repeat([]byte{0xa5}, 4000)
	for i := 0; i < 10; i++ {
		r.send(r.gh(VsockOpRW, 51, 5003), chunk)
	}
	readN(t, s, 40000)
	// Unasked: the guest believed it had under half the buffer left.
	p := r.expect(VsockOpCreditUpdate)
	if p.h.bufAlloc != VsockBufAlloc || p.h.fwdCount == 0 || p.h.fwdCount > 40000 {
		t.Fatalf("credit update %+v after 40000 bytes", p.h)
	}
	for fwd := p.h.fwdCount; fwd != 40000; {
		r.send(r.gh(VsockOpCreditRequest, 51, 5003), nil)
		time.Sleep(time.Millisecond)
		for _, p := range r.received() {
			r.postRX(1)
			if p.h.op != VsockOpCreditUpdate || p.h.fwdCount < fwd || p.h.fwdCount > 40000 {
				t.Fatalf("after CREDIT_REQUEST: %+v", p.h)
			}
			fwd = p.h.fwdCount
		}
	}
	// The host stops reading; the guest ignores its credit. The hv
	// fills the socket, then its own buffer, then resets.
	s.SetReadBuffer(4096)
	rst := false
	for sent := 0; sent < 4<<20 && !rst; sent += 16384 {
		r.send(r.gh(VsockOpRW, 51, 5003), bytes.Repeat([]byte{1}, 16384))
		r.vs.mu.Lock()
		for _, c := range r.vs.conns {
			if c.rxCnt-c.fwdCnt > VsockBufAlloc {
				t.Errorf("hv holds %d bytes, more than the %d it advertised", c.rxCnt-c.fwdCnt, VsockBufAlloc)
			}
		}
		r.vs.mu.Unlock()
		for _, p := range r.received() {
			r.postRX(1)
			rst = rst || p.h.op == VsockOpRST
		}
		time.Sleep(100 * time.Microsecond)
	}
	if !rst {
		t.Fatal("no RST for a guest sending 4 MiB beyond its credit")
	}
}

// TestVsockGuestBeyondCredit: the guest may send exactly buf_alloc
// past the fwd_cnt it was last told; the byte beyond resets the
// connection, and the host gets no more than buf_alloc.
func TestVsockGuestBeyondCredit(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(2)
	ln := r.listen(5007)
	// Exactly the credit: all of it reaches the host, no RST.
	s := r.open(ln, 62, 5007)
	for i := 0; i < 4; i++ {
		r.offerTX(r.gh(VsockOpRW, 62, 5007), bytes.Repeat([]byte{byte(i)}, VsockBufAlloc/4))
	}
	r.w32(RegQueueNotify, vsockTX)
	readN(t, s, VsockBufAlloc)
	time.Sleep(20 * time.Millisecond)
	for _, p := range append(r.backlog, r.received()...) {
		if p.h.op != VsockOpCreditUpdate {
			t.Fatalf("op %d after exactly buf_alloc bytes", p.h.op)
		}
	}
	r.backlog = nil
	r.postRX(2)

	// One byte more.
	s = r.open(ln, 61, 5007)
	for i := 0; i < 4; i++ {
		r.offerTX(r.gh(VsockOpRW, 61, 5007), bytes.Repeat([]byte{byte(i)}, VsockBufAlloc/4))
	}
	r.offerTX(r.gh(VsockOpRW, 61, 5007), []byte{9})
	// One notify: no credit update can reach the guest between them.
	r.w32(RegQueueNotify, vsockTX)
	r.expect(VsockOpRST)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, s)
	if n > VsockBufAlloc || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("host got %d bytes, %v; want at most %d, then the end", n, err, VsockBufAlloc)
	}
}

func TestVsockHostile(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(8)
	ln := r.listen(5004)
	s := r.open(ln, 52, 5004)

	// len beyond the chain: RST, and the connection is gone.
	h := r.gh(VsockOpRW, 52, 5004)
	h.len = 1000
	r.send(h, []byte("short"))
	r.expect(VsockOpRST)
	expectEOF(t, s)

	// len beyond the maximum packet, with a chain that holds it.
	s = r.open(ln, 53, 5004)
	big := make([]byte, VsockMaxPayload+1)
	h = r.gh(VsockOpRW, 53, 5004)
	h.len = uint32(len(big))
	r.send(h, big)
	r.expect(VsockOpRST)
	expectEOF(t, s)

	// An unknown op on a connection resets it; on none, it is answered.
	s = r.open(ln, 54, 5004)
	r.send(r.gh(99, 54, 5004), nil)
	r.expect(VsockOpRST)
	expectEOF(t, s)
	r.send(r.gh(0, 55, 5004), nil)
	r.expect(VsockOpRST)
	// RW on no connection; an RST on none is not answered.
	r.send(r.gh(VsockOpRW, 56, 5004), nil)
	r.expect(VsockOpRST)
	r.send(r.gh(VsockOpRST, 57, 5004), nil)
	// Another source CID is dropped; another destination, or a type that
	// is not STREAM, answered with RST.
	h = r.gh(VsockOpRequest, 58, 5004)
	h.srcCID = 3
	r.send(h, nil)
	r.quiet(50 * time.Millisecond)
	h = r.gh(VsockOpRequest, 58, 5004)
	h.dstCID = 9
	r.send(h, nil)
	r.expect(VsockOpRST)
	h = r.gh(VsockOpRequest, 58, 5004)
	h.typ = 2
	r.send(h, nil)
	r.expect(VsockOpRST)
	// Huge ports: the highest port, to a socket path that does not exist.
	r.send(r.gh(VsockOpRequest, 0xffffffff, 0xffffffff), nil)
	if p := r.expect(VsockOpRST); p.h.srcPort != 0xffffffff || p.h.dstPort != 0xffffffff {
		t.Fatalf("RST %+v", p.h)
	}
	// RW before the host has answered the guest's own REQUEST would be
	// refused too; a second REQUEST on an open connection resets it.
	s = r.open(ln, 59, 5004)
	r.send(r.gh(VsockOpRequest, 59, 5004), nil)
	r.expect(VsockOpRST)
	expectEOF(t, s)

	// A header cut short by the chain is a broken ring: reset needed.
	r.locked(func() {
		slot := r.txNext % (vqSize / 2)
		r.txNext++
		r.setDesc(vsockTX, 2*slot, txBufAt, 20, 0, 0)
		r.offer(vsockTX, uint16(2*slot))
	})
	r.w32(RegQueueNotify, vsockTX)
	if r.r32(RegStatus)&StatusDeviceNeedsReset == 0 {
		t.Fatal("a 20-byte header did not ask for a reset")
	}
}

// TestVsockResetDropsConnections: a driver reset closes the host sockets.
func TestVsockResetDropsConnections(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(2)
	ln := r.listen(5005)
	s := r.open(ln, 60, 5005)
	r.w32(RegStatus, 0)
	expectEOF(t, s)
}

func TestVsockConnectionCap(t *testing.T) {
	r := newVsockRig(t)
	ln := r.listen(5006)
	go func() { // accept and hold everything
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	r.postRX(8)
	responses, rsts := 0, 0
	for i := 0; i < VsockMaxConns+1; i++ {
		r.send(r.gh(VsockOpRequest, uint32(1000+i), 5006), nil)
		p := r.expect(VsockOpResponse + uint16(i/VsockMaxConns)) // the 65th is RST (3)
		if p.h.op == VsockOpResponse {
			responses++
		} else {
			rsts++
		}
	}
	if responses != VsockMaxConns || rsts != 1 {
		t.Fatalf("%d responses and %d RSTs", responses, rsts)
	}
	// A host client beyond the cap is closed at once.
	c, err := net.Dial("unix", r.uds)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectEOF(t, c)
}

// TestVsockRSTQueueBounded: a guest that provokes RSTs without posting
// receive buffers makes the hv hold at most vsockMaxRST of them.
func TestVsockRSTQueueBounded(t *testing.T) {
	r := newVsockRig(t)
	for i := 0; i < vsockMaxRST+50; i++ {
		r.send(r.gh(VsockOpRW, uint32(i), 1), nil)
	}
	got := 0
	for {
		r.postRX(vqSize / 2)
		ps := r.received()
		if len(ps) == 0 {
			break
		}
		got += len(ps)
	}
	if got != vsockMaxRST {
		t.Fatalf("%d RSTs delivered, want the bound %d", got, vsockMaxRST)
	}
}

// FuzzVsockPackets feeds the socket device arbitrary packets from the
// guest, each split over two descriptors at a fuzzed point, with one
// receive buffer of a fuzzed size: the device must not panic, must keep
// its bounds, and must complete every chain or ask for a reset.
func FuzzVsockPackets(f *testing.F) {
	pkt := func(h vsockHdr, payload string) []byte {
		h.len = uint32(len(payload))
		b := make([]byte, VsockHdrSize, VsockHdrSize+len(payload))
		h.encode(b)
		return append(b, payload...)
	}
	g := func(op uint16, sp, dp uint32) vsockHdr {
		return vsockHdr{srcCID: 7, dstCID: VsockHostCID, srcPort: sp, dstPort: dp, typ: VsockTypeStream, op: op, bufAlloc: 4096}
	}
	frame := func(pkts ...[]byte) []byte {
		var out []byte
		for _, p := range pkts {
			out = binary.LittleEndian.AppendUint16(out, uint16(len(p)))
			out = append(out, p...)
		}
		return out
	}
	f.Add(frame(pkt(g(VsockOpRequest, 1, 2), "")), uint16(4140), uint8(44))
	f.Add(frame(pkt(g(VsockOpRW, 1, 2), "data"), pkt(g(VsockOpShutdown, 1, 2), "")), uint16(100), uint8(3))
	f.Add(frame(pkt(g(VsockOpCreditRequest, 1, 2), ""), pkt(g(9, 1, 2), "")), uint16(44), uint8(0))
	f.Add(frame(pkt(g(VsockOpRST, 1, 2), ""), pkt(g(VsockOpCreditUpdate, 5, 6), "x")), uint16(20), uint8(50))

	r := newVsockRig(f)
	f.Fuzz(func(t *testing.T, data []byte, rxLen uint16, split uint8) {
		r.t = t
		r.init()
		r.locked(func() {
			r.setDesc(vsockRX, 0, rxBufAt, uint32(rxLen%8192), descFWrite, 0)
			r.offer(vsockRX, 0)
		})
		r.w32(RegQueueNotify, vsockRX)
		for len(data) >= 2 {
			n := min(int(binary.LittleEndian.Uint16(data)), len(data)-2, 0x10000)
			p := data[2 : 2+n]
			data = data[2+n:]
			r.locked(func() {
				copy(r.mem[txBufAt:], p)
				cut := min(int(split), n)
				r.setDesc(vsockTX, 0, txBufAt, uint32(cut), descFNext, 1)
				r.setDesc(vsockTX, 1, txBufAt+uint64(cut), uint32(n-cut), 0, 0)
				r.offer(vsockTX, 0)
			})
			r.w32(RegQueueNotify, vsockTX)
			needsReset := r.r32(RegStatus)&StatusDeviceNeedsReset != 0
			r.locked(func() {
				q := &r.dev.qs[vsockTX]
				if !needsReset && q.usedIdx != r.avail[vsockTX] {
					t.Fatalf("tx used %d of %d without a reset", q.usedIdx, r.avail[vsockTX])
				}
			})
			r.vs.mu.Lock()
			if len(r.vs.conns)+r.vs.pending > VsockMaxConns || len(r.vs.rsts) > vsockMaxRST+VsockMaxConns {
				t.Fatalf("%d connections, %d RSTs queued", len(r.vs.conns), len(r.vs.rsts))
			}
			for _, c := range r.vs.conns {
				if c.rxCnt-c.fwdCnt > VsockBufAlloc {
					t.Fatalf("holding %d bytes", c.rxCnt-c.fwdCnt)
				}
			}
			r.vs.mu.Unlock()
			if needsReset {
				return
			}
		}
	})
}

// FuzzVsockRegisters drives the socket device's MMIO window with
// arbitrary accesses over memory of arbitrary bytes: queue setup on all
// three queues, notifies of each, resets.
func FuzzVsockRegisters(f *testing.F) {
	f.Add([]byte{0x0c, 1, 0, 0, 0, 0x0e, 16, 0, 0, 0, 0x11, 1, 0, 0, 0, 0x14, 1, 0, 0, 0, 0x1c, 0xf, 0, 0, 0})
	f.Add([]byte{0x1c, 3, 0, 0, 0, 0x0c, 2, 0, 0, 0, 0x14, 2, 0, 0, 0, 0x14, 0, 0, 0, 0})
	r := newVsockRig(f)
	f.Fuzz(func(t *testing.T, prog []byte) {
		r.t = t
		r.w32(RegStatus, 0)
		r.locked(func() {
			for i := range r.mem[:1<<20] {
				r.mem[i] = byte(i * 7)
			}
		})
		for len(prog) >= 5 {
			off := uint64(prog[0]) << 2
			if prog[1]&0x80 != 0 {
				off = RegConfig + uint64(prog[1]&0x7f)
			}
			v := binary.LittleEndian.Uint32(prog[1:])
			if prog[0]&1 != 0 {
				var b [4]byte
				r.dev.Read(off, b[:])
			} else {
				r.w32(off&^3, v)
			}
			prog = prog[5:]
			r.locked(func() {
				for i, q := range r.dev.qs {
					if q.ready && (q.num == 0 || q.num > QueueNumMax || q.num&(q.num-1) != 0) {
						t.Fatalf("queue %d enabled with size %d", i, q.num)
					}
				}
			})
		}
		r.vs.mu.Lock()
		n := len(r.vs.conns)
		r.vs.mu.Unlock()
		if n > VsockMaxConns {
			t.Fatalf("%d connections", n)
		}
	})
}
