package uart

import (
	"bytes"
	"strings"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	var out bytes.Buffer
	a := New(&out, nil)
	a.Write(RegLCR, []byte{0x03})
	a.Write(RegIER, []byte{IERRxData})
	a.Write(RegSCR, []byte{0x5a})
	a.Input([]byte("hello"))
	a.Read(RegData, []byte{0}) // "h" is taken: the FIFO's head moves
	b, err := a.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	var level []bool
	r := New(&out, func(l bool) { level = append(level, l) })
	if err := r.RestoreState(b); err != nil {
		t.Fatal(err)
	}
	if len(level) != 1 || !level[0] {
		t.Errorf("restored UART with data and IER.RxData drove its line %v, want [true]", level)
	}
	d := []byte{0}
	var got []byte
	for r.Buffered() > 0 {
		r.Read(RegData, d)
		got = append(got, d[0])
	}
	if string(got) != "ello" {
		t.Errorf("restored FIFO gave %q, want %q", got, "ello")
	}
	r.Read(RegSCR, d)
	if d[0] != 0x5a {
		t.Errorf("SCR %#x, want 0x5a", d[0])
	}
}

func TestStateHostile(t *testing.T) {
	u := New(nil, nil)
	u.Input([]byte("x"))
	for _, c := range []struct{ in, want string }{
		{`{"version":1,"rx":"` + strings.Repeat("QUFB", RxFIFOSize/3+1) + `"}`, "FIFO holds"},
		{`{"version":9}`, "version 9"},
		{`{"version":1,"ier":256}`, "cannot unmarshal"},
		{`{"version":1,"rx":"!!"}`, "illegal base64"},
	} {
		if err := u.RestoreState([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.30q: got %v, want %q", c.in, err, c.want)
		}
	}
	if u.Buffered() != 1 {
		t.Errorf("a refused state changed the UART: %d bytes buffered, want 1", u.Buffered())
	}
}
