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
	if got := u.Read(RegLSR); got != LSRTHRE|LSRTEMT {
		t.Errorf("LSR = %#x, want THRE|TEMT", got)
	}
	if got := u.Read(RegIIR); got != IIRNone {
		t.Errorf("IIR = %#x, want no interrupt", got)
	}
	if got := u.Read(RegIER); got != 0 {
		t.Errorf("IER = %#x, want 0", got)
	}
	if got := u.Read(RegMSR); got&0xf0 != MSRCTS|MSRDSR|MSRDCD {
		t.Errorf("MSR = %#x, want CTS|DSR|DCD", got)
	}
	if l.level {
		t.Error("irq raised at reset")
	}
}

func TestTransmit(t *testing.T) {
	u, out, _ := newTest(t)
	for _, b := range []byte("hello\n") {
		u.Write(RegData, b)
	}
	if out.String() != "hello\n" {
		t.Errorf("output %q", out.String())
	}
}

func TestDivisorLatch(t *testing.T) {
	u, out, _ := newTest(t)
	u.Write(RegLCR, LCRDLAB|0x03)
	u.Write(RegData, 0x01) // DLL: 115200 baud
	u.Write(RegIER, 0x00)  // DLM
	if u.Read(RegData) != 0x01 || u.Read(RegIER) != 0x00 {
		t.Error("divisor latch does not read back")
	}
	u.Write(RegLCR, 0x03)
	if out.Len() != 0 {
		t.Errorf("divisor write leaked to output: %q", out.String())
	}
	if u.Read(RegLCR) != 0x03 {
		t.Error("LCR does not read back")
	}
	if u.Read(RegIER) != 0 {
		t.Error("IER changed by a DLM write")
	}
}

func TestScratch(t *testing.T) {
	u, _, _ := newTest(t)
	u.Write(RegSCR, 0x5a)
	if got := u.Read(RegSCR); got != 0x5a {
		t.Errorf("SCR = %#x", got)
	}
}

func TestReceive(t *testing.T) {
	u, _, l := newTest(t)
	u.Input([]byte("ab"))
	if l.level {
		t.Fatal("irq raised with ERBFI clear")
	}
	if u.Read(RegLSR)&LSRDataReady == 0 {
		t.Fatal("LSR.DR clear with data queued")
	}
	u.Write(RegIER, IERRxData)
	if !l.level {
		t.Fatal("irq not raised after enabling ERBFI with data")
	}
	if got := u.Read(RegIIR); got != IIRRxData {
		t.Errorf("IIR = %#x, want rx data", got)
	}
	if u.Read(RegData) != 'a' || u.Read(RegData) != 'b' {
		t.Error("bytes out of order")
	}
	if l.level {
		t.Error("irq still raised with FIFO empty")
	}
	if u.Read(RegLSR)&LSRDataReady != 0 {
		t.Error("LSR.DR set with FIFO empty")
	}
}

func TestReceiveOverrun(t *testing.T) {
	u, _, _ := newTest(t)
	u.Input(make([]byte, RxFIFOSize+10))
	if u.Buffered() != RxFIFOSize {
		t.Fatalf("buffered %d, want %d", u.Buffered(), RxFIFOSize)
	}
	if u.Read(RegLSR)&LSROverrun == 0 {
		t.Error("no overrun reported")
	}
	if u.Read(RegLSR)&LSROverrun != 0 {
		t.Error("overrun not cleared by reading LSR")
	}
	u.Write(RegIIR, FCREnable|FCRClearRx)
	if u.Buffered() != 0 {
		t.Error("FCR clear did not empty the receiver")
	}
}

func TestFIFOBitsInIIR(t *testing.T) {
	u, _, _ := newTest(t)
	if u.Read(RegIIR)&IIRFIFO != 0 {
		t.Error("FIFO bits set with FIFOs disabled")
	}
	u.Write(RegIIR, FCREnable)
	if got := u.Read(RegIIR); got != IIRFIFO|IIRNone {
		t.Errorf("IIR = %#x, want 0xc1", got)
	}
}

func TestTHREInterrupt(t *testing.T) {
	u, _, l := newTest(t)
	u.Write(RegIER, IERTHRE)
	if !l.level {
		t.Fatal("enabling ETBEI with THR empty raised no interrupt")
	}
	if got := u.Read(RegIIR); got != IIRTHRE {
		t.Fatalf("IIR = %#x, want THRE", got)
	}
	if l.level {
		t.Fatal("reading IIR did not clear the THRE interrupt")
	}
	if got := u.Read(RegIIR); got != IIRNone {
		t.Fatalf("second IIR = %#x, want none", got)
	}
	u.Write(RegData, 'x')
	if !l.level || u.Read(RegIIR) != IIRTHRE {
		t.Fatal("THR write did not re-arm THRE once the byte left")
	}
	u.Write(RegIER, 0)
	if l.level {
		t.Error("irq still raised after IER=0")
	}
}

func TestInterruptPriority(t *testing.T) {
	u, _, _ := newTest(t)
	u.Input(make([]byte, RxFIFOSize+1)) // data and an overrun
	u.Write(RegIER, IERRxData|IERTHRE|IERLineStatus|IERModem)
	u.Write(RegMCR, MCRDTR) // no loop: MSR constant, no delta
	order := []byte{IIRLineStatus, IIRRxData}
	for _, want := range order {
		if got := u.Read(RegIIR); got != want {
			t.Fatalf("IIR = %#x, want %#x", got, want)
		}
		if want == IIRLineStatus {
			u.Read(RegLSR)
		}
	}
	for u.Buffered() > 0 {
		u.Read(RegData)
	}
	if got := u.Read(RegIIR); got != IIRTHRE {
		t.Fatalf("IIR = %#x, want THRE after rx drained", got)
	}
	// Loopback makes modem status bits change: lowest priority.
	u.Write(RegMCR, MCRLoop|MCRRTS)
	if got := u.Read(RegIIR); got != IIRModem {
		t.Fatalf("IIR = %#x, want modem status", got)
	}
	// DSR and DCD dropped (DTR and OUT2 are clear); CTS follows RTS.
	if got := u.Read(RegMSR); got != MSRCTS|0x02|0x08 {
		t.Fatalf("MSR = %#x, want CTS|DDSR|DDCD", got)
	}
	if got := u.Read(RegIIR); got != IIRNone {
		t.Errorf("IIR = %#x after reading MSR, want none", got)
	}
}

func TestLoopback(t *testing.T) {
	u, out, _ := newTest(t)
	u.Write(RegMCR, MCRLoop|MCROut2|MCRRTS)
	if got := u.Read(RegMSR) & 0xf0; got != MSRDCD|MSRCTS {
		t.Errorf("loop MSR = %#x, want 0x90", got)
	}
	u.Write(RegData, 'Z')
	if out.Len() != 0 {
		t.Error("loopback byte reached the host")
	}
	if u.Read(RegData) != 'Z' {
		t.Error("loopback byte not received")
	}
	u.Write(RegMCR, MCROut2)
	if got := u.Read(RegMSR) & 0xf0; got != MSRCTS|MSRDSR|MSRDCD {
		t.Errorf("MSR after loop = %#x", got)
	}
}

// TestLinuxProbe replays what drivers/tty/serial/8250 does in autoconfig()
// and serial8250_do_startup(), with the checks it makes.
func TestLinuxProbe(t *testing.T) {
	u, out, l := newTest(t)

	// autoconfig: IER must hold exactly what was written (low nibble).
	save := u.Read(RegIER)
	u.Write(RegIER, 0)
	s2 := u.Read(RegIER) & 0x0f
	u.Write(RegIER, 0x0f)
	s3 := u.Read(RegIER) & 0x0f
	u.Write(RegIER, save)
	if s2 != 0 || s3 != 0x0f {
		t.Fatalf("IER test: %#x %#x, Linux wants 0 0x0f", s2, s3)
	}
	// Loopback test: MCR = LOOP|OUT2|RTS, MSR&0xf0 must be DCD|CTS.
	saveMCR := u.Read(RegMCR)
	saveLCR := u.Read(RegLCR)
	u.Write(RegMCR, MCRLoop|0x0a)
	s1 := u.Read(RegMSR) & 0xf0
	u.Write(RegMCR, saveMCR)
	if s1 != 0x90 {
		t.Fatalf("loopback MSR %#x, Linux wants 0x90", s1)
	}
	// FIFO type: EFR write under LCR=0xbf, then FCR enable, IIR>>6 == 3.
	u.Write(RegLCR, 0xbf)
	u.Write(RegIIR, 0) // EFR on a 16650: FCR here
	u.Write(RegLCR, 0)
	u.Write(RegIIR, FCREnable)
	if got := u.Read(RegIIR) >> 6; got != 3 {
		t.Fatalf("IIR>>6 = %d, Linux wants 3 (16550A)", got)
	}
	// autoconfig_16550a: EFR reads under LCR=0xbf and 0x80 must be non-zero
	// so that it is not taken for a 16650/16C650.
	u.Write(RegLCR, 0xbf)
	if u.Read(RegIIR) == 0 {
		t.Fatal("looks like an EFR (16650)")
	}
	u.Write(RegLCR, 0x80)
	if u.Read(RegIIR) == 0 {
		t.Fatal("looks like an ST16C650V1")
	}
	// 16750 test: 64-byte FIFO bit with and without DLAB.
	u.Write(RegIIR, FCREnable|0x20)
	st1 := u.Read(RegIIR) >> 5
	u.Write(RegIIR, FCREnable)
	u.Write(RegLCR, 0)
	u.Write(RegIIR, FCREnable|0x20)
	st2 := u.Read(RegIIR) >> 5
	u.Write(RegIIR, FCREnable)
	if st1 == 6 && st2 == 7 {
		t.Fatal("looks like a 16750")
	}
	u.Write(RegLCR, saveLCR)
	u.Write(RegIIR, FCREnable|FCRClearRx|FCRClearTx)
	u.Write(RegIIR, 0)
	u.Read(RegData)
	u.Write(RegIER, 0)

	// serial8250_do_startup.
	u.Write(RegIIR, FCREnable|FCRClearRx|FCRClearTx)
	u.Write(RegIIR, 0)
	if u.Read(RegLSR) == 0xff {
		t.Fatal("LSR 0xff: no UART")
	}
	u.Read(RegData)
	u.Read(RegIIR)
	u.Read(RegMSR)
	// UART_BUG_THRE test: THRE must re-assert each time ETBEI is enabled.
	u.Write(RegIER, IERTHRE)
	iir1 := u.Read(RegIIR)
	u.Write(RegIER, 0)
	u.Write(RegIER, IERTHRE)
	iir := u.Read(RegIIR)
	u.Write(RegIER, 0)
	if iir1&IIRNone != 0 || iir&IIRNone != 0 {
		t.Fatalf("THRE test: iir1=%#x iir=%#x; Linux would set UART_BUG_THRE", iir1, iir)
	}
	u.Write(RegLCR, 0x03)
	u.Write(RegMCR, MCROut2|MCRDTR|MCRRTS)
	// UART_BUG_TXEN test.
	u.Write(RegIER, IERTHRE)
	lsr := u.Read(RegLSR)
	iir = u.Read(RegIIR)
	u.Write(RegIER, 0)
	if lsr&LSRTEMT != 0 && iir&IIRNone != 0 {
		t.Fatal("TXEN test failed; Linux would set UART_BUG_TXEN")
	}
	u.Read(RegLSR)
	u.Read(RegData)
	u.Read(RegIIR)
	u.Read(RegMSR)
	u.Write(RegIER, IERLineStatus|IERRxData)
	if l.level {
		t.Fatal("irq raised with nothing to report")
	}

	// THRE-driven transmit: start_tx sets ETBEI, the handler reads IIR and
	// LSR, writes up to 16 bytes, and stops TX when the buffer is empty.
	msg := bytes.Repeat([]byte("0123456789abcdef-"), 10)
	pending := msg
	u.Write(RegIER, u.Read(RegIER)|IERTHRE)
	interrupts := 0
	for l.level {
		interrupts++
		if interrupts > 1000 {
			t.Fatal("interrupt storm")
		}
		iir := u.Read(RegIIR)
		if iir&IIRNone != 0 {
			t.Fatal("spurious interrupt")
		}
		if u.Read(RegLSR)&LSRTHRE == 0 {
			continue
		}
		for i := 0; i < 16 && len(pending) > 0; i++ {
			u.Write(RegData, pending[0])
			pending = pending[1:]
		}
		if len(pending) == 0 {
			u.Write(RegIER, u.Read(RegIER)&^IERTHRE)
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
	u.Write(RegIER, IERRxData)
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
		if u.Read(RegLSR)&LSRDataReady != 0 {
			u.Read(RegData)
			got++
		}
	}
	wg.Wait()
	if u.Buffered() != 0 {
		t.Errorf("%d bytes left", u.Buffered())
	}
}
