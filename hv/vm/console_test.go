package vm

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A socket client that does not read while the guest writes a byte at a
// time (as the UART does) stays connected, and once it reads it gets the
// newest ConsoleRing bytes, up to the last one written. It was cut off
// instead, which froze the monitor's console.log for good.
func TestConsoleSlowClientKept(t *testing.T) {
	c, err := OpenConsole("unix:" + filepath.Join(t.TempDir(), "console.sock"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", c.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.clients)
		c.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	line := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n")
	total := 0
	for total < 4*ConsoleRing {
		for _, b := range line {
			c.Write([]byte{b})
		}
		total += len(line)
	}
	c.Write([]byte("END\n"))
	type result struct {
		got []byte
		err error
	}
	done := make(chan result)
	go func() {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		done <- result{got, err}
	}()
	c.Close()
	r := <-done
	got := r.got
	if r.err != nil {
		t.Fatalf("read: %v (after %d bytes)", r.err, len(got))
	}
	if !bytes.HasSuffix(got, []byte("END\n")) {
		t.Fatalf("the client lost the last bytes: %d bytes, ending %q", len(got), got[max(0, len(got)-40):])
	}
	// What the hv held for the client was bounded: beyond the socket's
	// own buffer, at most ConsoleRing of the 256 KiB reached it.
	if len(got) >= total {
		t.Fatalf("the client got all %d bytes: nothing was bounded", len(got))
	}
	tail := string(got[len(got)-ConsoleRing:])
	if strings.Count(tail, string(line)) < ConsoleRing/len(line)-2 {
		t.Fatalf("the last %d bytes are not the newest lines", ConsoleRing)
	}
}
