package uart

import (
	"io"
	"testing"
)

// FuzzUART drives the UART with an arbitrary program: each step is an
// opcode byte (read, write or input) followed by its operands. Whatever the
// program, the UART must not panic, the receive FIFO stays bounded, and the
// interrupt line equals "an enabled interrupt is pending".
func FuzzUART(f *testing.F) {
	f.Add([]byte{1, 1, 0x0f, 2, 3, 'a', 'b', 'c', 0, 2, 0, 0})
	f.Add([]byte{1, 4, 0x1a, 1, 0, 'x', 0, 0, 0, 6})
	f.Add([]byte{1, 3, 0x80, 1, 0, 1, 1, 3, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		level := false
		u := New(io.Discard, func(l bool) {
			if l == level {
				t.Fatalf("irq(%v) without a change", l)
			}
			level = l
		})
		for len(prog) >= 2 {
			op, arg := prog[0], prog[1]
			prog = prog[2:]
			switch op % 3 {
			case 0:
				var b [4]byte
				u.Read(uint64(arg), b[:1+arg>>6])
			case 1:
				if len(prog) == 0 {
					return
				}
				u.Write(uint64(arg), prog[:1])
				prog = prog[1:]
			case 2:
				n := min(int(arg)*32, len(prog)*64)
				buf := make([]byte, n)
				u.Input(buf)
			}
			u.mu.Lock()
			if u.rxLen < 0 || u.rxLen > RxFIFOSize || u.rxHead < 0 || u.rxHead >= RxFIFOSize {
				t.Fatalf("rx fifo out of bounds: head %d len %d", u.rxHead, u.rxLen)
			}
			if want := u.pendingIIR() != IIRNone; want != level {
				t.Fatalf("irq line %v, pending %v", level, want)
			}
			if u.ier&0xf0 != 0 {
				t.Fatalf("IER %#x has reserved bits", u.ier)
			}
			u.mu.Unlock()
		}
	})
}
