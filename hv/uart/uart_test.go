package uart

import (
	"bytes"
	"sync"
	"testing"
)

// line records the interrupt line and checks that it only toggles.
type line struct {
	t       testing.TB
	level   bool
	changes int
}

func (l *line) set(level bool) {
	if level == l.level {
		l.t.Fatalf("irq(%v) called without a change", level)
	}
	l.level = level
	l.changes++
}

func newTest(t testing.TB) (*UART, *bytes.Buffer, *line) {
	var out bytes.Buffer
	l := &line{t: t}
	return New(&out, l.set), &out, l
}

func TestResetState(t *testing.T) {
	u, _, l := newTest(t)
	if got := u.read(RegLSR); got != LSRTHRE|LSRTEMT {
		t.Errorf("LSR = %#x, want THRE|TEMT", got)
	}
	if got := u.read(RegIIR); got != IIRNone {
		t.Errorf("IIR = %#x, want no interrupt", got)
	}
	if got := u.read(RegIER); got != 0 {
		t.Errorf("IER = %#x, want 0", got)
	}
	if got := u.read(RegMSR); got&0xf0 != MSRCTS|MSRDSR|MSRDCD {
		t.Errorf("MSR = %#x, want CTS|DSR|DCD", got)
	}
	if l.level {
		t.Error("irq raised at reset")
	}
}

func TestTransmit(t *testing.T) {
	u, out, _ := newTest(t)
	for _, b := range []byte("hello\n") {
		u.write(RegData, b)
	}
	if out.String() != "hello\n" {
		t.Errorf("output %q", out.String())
	}
}

func TestDivisorLatch(t *testing.T) {
	u, out, _ := newTest(t)
	u.write(RegLCR, LCRDLAB|0x03)
	u.write(RegData, 0x01) // DLL: 115200 baud
	u.write(RegIER, 0x00)  // DLM
	if u.read(RegData) != 0x01 || u.read(RegIER) != 0x00 {
		t.Error("divisor latch does not read back")
	}
	u.write(RegLCR, 0x03)
	if out.Len() != 0 {
		t.Errorf("divisor write leaked to output: %q", out.String())
	}
	if u.read(RegLCR) != 0x03 {
		t.Error("LCR does not read back")
	}
	if u.read(RegIER) != 0 {
		t.Error("IER changed by a DLM write")
	}
}

func TestScratch(t *testing.T) {
	u, _, _ := newTest(t)
	u.write(RegSCR, 0x5a)
	if got := u.read(RegSCR); got != 0x5a {
		t.Errorf("SCR = %#x", got)
	}
}

func TestReceive(t *testing.T) {
	u, _, l := newTest(t)
	u.Input([]byte("ab"))
	if l.level {
		t.Fatal("irq raised with ERBFI clear")
	}
	if u.read(RegLSR)&LSRDataReady == 0 {
		t.Fatal("LSR.DR clear with data queued")
	}
	u.write(RegIER, IERRxData)
	if !l.level {
		t.Fatal("irq not raised after enabling ERBFI with data")
	}
	if got := u.read(RegIIR); got != IIRRxData {
		t.Errorf("IIR = %#x, want rx data", got)
	}
	if u.read(RegData) != 'a' || u.read(RegData) != 'b' {
		t.Error("bytes out of order")
	}
	if l.level {
		t.Error("irq still raised with FIFO empty")
	}
	if u.read(RegLSR)&LSRDataReady != 0 {
		t.Error("LSR.DR set with FIFO empty")
	}
}

func TestReceiveOverrun(t *testing.T) {
	u, _, _ := newTest(t)
	u.Input(make([]byte, RxFIFOSize+10))
	if u.Buffered() != RxFIFOSize {
		t.Fatalf("buffered %d, want %d", u.Buffered(), RxFIFOSize)
	}
	if u.read(RegLSR)&LSROverrun == 0 {
		t.Error("no overrun reported")
	}
	if u.read(RegLSR)&LSROverrun != 0 {
		t.Error("overrun not cleared by reading LSR")
	}
	u.write(RegIIR, FCREnable|FCRClearRx)
	if u.Buffered() != 0 {
		t.Error("FCR clear did not empty the receiver")
	}
}

func TestFIFOBitsInIIR(t *testing.T) {
	u, _, _ := newTest(t)
	if u.read(RegIIR)&IIRFIFO != 0 {
		t.Error("FIFO bits set with FIFOs disabled")
	}
	u.write(RegIIR, FCREnable)
	if got := u.read(RegIIR); got != IIRFIFO|IIRNone {
		t.Errorf("IIR = %#x, want 0xc1", got)
	}
}

func TestTHREInterrupt(t *testing.T) {
	u, _, l := newTest(t)
	u.write(RegIER, IERTHRE)
	if !l.level {
		t.Fatal("enabling ETBEI with THR empty raised no interrupt")
	}
	if got := u.read(RegIIR); got != IIRTHRE {
		t.Fatalf("IIR = %#x, want THRE", got)
	}
	if l.level {
		t.Fatal("reading IIR did not clear the THRE interrupt")
	}
	if got := u.read(RegIIR); got != IIRNone {
		t.Fatalf("second IIR = %#x, want none", got)
	}
	u.write(RegData, 'x')
	if !l.level || u.read(RegIIR) != IIRTHRE {
		t.Fatal("THR write did not re-arm THRE once the byte left")
	}
	u.write(RegIER, 0)
	if l.level {
		t.Error("irq still raised after IER=0")
	}
}

func TestInterruptPriority(t *testing.T) {
	u, _, _ := newTest(t)
	u.Input(make([]byte, RxFIFOSize+1)) // data and an overrun
	u.write(RegIER, IERRxData|IERTHRE|IERLineStatus|IERModem)
	u.write(RegMCR, MCRDTR) // no loop: MSR constant, no delta
	order := []byte{IIRLineStatus, IIRRxData}
	for _, want := range order {
		if got := u.read(RegIIR); got != want {
			t.Fatalf("IIR = %#x, want %#x", got, want)
		}
		if want == IIRLineStatus {
			u.read(RegLSR)
		}
	}
	for u.Buffered() > 0 {
		u.read(RegData)
	}
	if got := u.read(RegIIR); got != IIRTHRE {
		t.Fatalf("IIR = %#x, want THRE after rx drained", got)
	}
	// Loopback makes modem status bits change: lowest priority.
	u.write(RegMCR, MCRLoop|MCRRTS)
	if got := u.read(RegIIR); got != IIRModem {
		t.Fatalf("IIR = %#x, want modem status", got)
	}
	// DSR and DCD dropped (DTR and OUT2 are clear); CTS follows RTS.
	if got := u.read(RegMSR); got != MSRCTS|0x02|0x08 {
		t.Fatalf("MSR = %#x, want CTS|DDSR|DDCD", got)
	}
	if got := u.read(RegIIR); got != IIRNone {
		t.Errorf("IIR = %#x after reading MSR, want none", got)
	}
}

func TestLoopback(t *testing.T) {
	u, out, _ := newTest(t)
	u.write(RegMCR, MCRLoop|MCROut2|MCRRTS)
	if got := u.read(RegMSR) & 0xf0; got != MSRDCD|MSRCTS {
		t.Errorf("loop MSR = %#x, want 0x90", got)
	}
	u.write(RegData, 'Z')
	if out.Len() != 0 {
		t.Error("loopback byte reached the host")
	}
	if u.read(RegData) != 'Z' {
		t.Error("loopback byte not received")
	}
	u.write(RegMCR, MCROut2)
	if got := u.read(RegMSR) & 0xf0; got != MSRCTS|MSRDSR|MSRDCD {
		t.Errorf("MSR after loop = %#x", got)
	}
}

// TestLinuxProbe replays what drivers/tty/serial/8250 does in autoconfig()
// and serial8250_do_startup(), with the checks it makes.
func TestLinuxProbe(t *testing.T) {
	u, out, l := newTest(t)

	// autoconfig: IER must hold exactly what was written (low nibble).
	save := u.read(RegIER)
	u.write(RegIER, 0)
	s2 := u.read(RegIER) & 0x0f
	u.write(RegIER, 0x0f)
	s3 := u.read(RegIER) & 0x0f
	u.write(RegIER, save)
	if s2 != 0 || s3 != 0x0f {
		t.Fatalf("IER test: %#x %#x, Linux wants 0 0x0f", s2, s3)
	}
	// Loopback test: MCR = LOOP|OUT2|RTS, MSR&0xf0 must be DCD|CTS.
	saveMCR := u.read(RegMCR)
	saveLCR := u.read(RegLCR)
	u.write(RegMCR, MCRLoop|0x0a)
	s1 := u.read(RegMSR) & 0xf0
	u.write(RegMCR, saveMCR)
	if s1 != 0x90 {
		t.Fatalf("loopback MSR %#x, Linux wants 0x90", s1)
	}
	// FIFO type: EFR write under LCR=0xbf, then FCR enable, IIR>>6 == 3.
	u.write(RegLCR, 0xbf)
	u.write(RegIIR, 0) // EFR on a 16650: FCR here
	u.write(RegLCR, 0)
	u.write(RegIIR, FCREnable)
	if got := u.read(RegIIR) >> 6; got != 3 {
		t.Fatalf("IIR>>6 = %d, Linux wants 3 (16550A)", got)
	}
	// autoconfig_16550a: EFR reads under LCR=0xbf and 0x80 must be non-zero
	// so that it is not taken for a 16650/16C650.
	u.write(RegLCR, 0xbf)
	if u.read(RegIIR) == 0 {
		t.Fatal("looks like an EFR (16650)")
	}
	u.write(RegLCR, 0x80)
	if u.read(RegIIR) == 0 {
		t.Fatal("looks like an ST16C650V1")
	}
	// 16750 test: 64-byte FIFO bit with and without DLAB.
	u.write(RegIIR, FCREnable|0x20)
	st1 := u.read(RegIIR) >> 5
	u.write(RegIIR, FCREnable)
	u.write(RegLCR, 0)
	u.write(RegIIR, FCREnable|0x20)
	st2 := u.read(RegIIR) >> 5
	u.write(RegIIR, FCREnable)
	if st1 == 6 && st2 == 7 {
		t.Fatal("looks like a 16750")
	}
	u.write(RegLCR, saveLCR)
	u.write(RegIIR, FCREnable|FCRClearRx|FCRClearTx)
	u.write(RegIIR, 0)
	u.read(RegData)
	u.write(RegIER, 0)

	// serial8250_do_startup.
	u.write(RegIIR, FCREnable|FCRClearRx|FCRClearTx)
	u.write(RegIIR, 0)
	if u.read(RegLSR) == 0xff {
		t.Fatal("LSR 0xff: no UART")
	}
	u.read(RegData)
	u.read(RegIIR)
	u.read(RegMSR)
	// UART_BUG_THRE test: THRE must re-assert each time ETBEI is enabled.
	u.write(RegIER, IERTHRE)
	iir1 := u.read(RegIIR)
	u.write(RegIER, 0)
	u.write(RegIER, IERTHRE)
	iir := u.read(RegIIR)
	u.write(RegIER, 0)
	if iir1&IIRNone != 0 || iir&IIRNone != 0 {
		t.Fatalf("THRE test: iir1=%#x iir=%#x; Linux would set UART_BUG_THRE", iir1, iir)
	}
	u.write(RegLCR, 0x03)
	u.write(RegMCR, MCROut2|MCRDTR|MCRRTS)
	// UART_BUG_TXEN test.
	u.write(RegIER, IERTHRE)
	lsr := u.read(RegLSR)
	iir = u.read(RegIIR)
	u.write(RegIER, 0)
	if lsr&LSRTEMT != 0 && iir&IIRNone != 0 {
		t.Fatal("TXEN test failed; Linux would set UART_BUG_TXEN")
	}
	u.read(RegLSR)
	u.read(RegData)
	u.read(RegIIR)
	u.read(RegMSR)
	u.write(RegIER, IERLineStatus|IERRxData)
	if l.level {
		t.Fatal("irq raised with nothing to report")
	}

	// THRE-driven transmit: start_tx sets ETBEI, the handler reads IIR and
	// LSR, writes up to 16 bytes, and stops TX when the buffer is empty.
	msg := bytes.Repeat([]byte("0123456789abcdef-"), 10)
	pending := msg
	u.write(RegIER, u.read(RegIER)|IERTHRE)
	interrupts := 0
	for l.level {
		interrupts++
		if interrupts > 1000 {
			t.Fatal("interrupt storm")
		}
		iir := u.read(RegIIR)
		if iir&IIRNone != 0 {
			t.Fatal("spurious interrupt")
		}
		if u.read(RegLSR)&LSRTHRE == 0 {
			continue
		}
		for i := 0; i < 16 && len(pending) > 0; i++ {
			u.write(RegData, pending[0])
			pending = pending[1:]
		}
		if len(pending) == 0 {
			u.write(RegIER, u.read(RegIER)&^IERTHRE)
		}
	}
	if !bytes.Equal(out.Bytes(), msg) {
		t.Fatalf("sent %q, want %q", out.Bytes(), msg)
	}
	if want := (len(msg) + 15) / 16; interrupts != want {
		t.Errorf("%d interrupts for %d bytes, want %d (one per 16-byte burst)", interrupts, len(msg), want)
	}
}

func TestConcurrentInput(t *testing.T) {
	u, _, _ := newTest(t)
	u.write(RegIER, IERRxData)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			u.Input([]byte{byte(i)})
		}
	}()
	got := 0
	for got < 1000 {
		if u.read(RegLSR)&LSRDataReady != 0 {
			u.read(RegData)
			got++
		}
	}
	wg.Wait()
	if u.Buffered() != 0 {
		t.Errorf("%d bytes left", u.Buffered())
	}
}

// TestWideAccess: the bus hands the UART whole 16- and 32-bit accesses;
// the register is the low byte, the rest reads as zeros and is not
// written anywhere.
func TestWideAccess(t *testing.T) {
	u, out, _ := newTest(t)
	u.Write(RegSCR, []byte{0x5a, 0x11, 0x22, 0x33})
	d := []byte{0xff, 0xff, 0xff, 0xff}
	u.Read(RegSCR, d)
	if d[0] != 0x5a || d[1] != 0 || d[2] != 0 || d[3] != 0 {
		t.Errorf("32-bit read of SCR = % x", d)
	}
	u.Write(RegData, []byte{'h', 'i'})
	if out.String() != "h" {
		t.Errorf("16-bit THR write sent %q", out.String())
	}
}
