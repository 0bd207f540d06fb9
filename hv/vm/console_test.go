package vm

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A socket client that does not read while the guest writes a byte at a
// time (as the UART does) stays connected, and once it reads it gets the
// newest ConsoleRing bytes, up to the last one written. It was cut off
// instead, which froze the monitor's console.log for good. What it lost
// is marked where it was lost, with the exact count, and console.log has
// every byte.
func TestConsoleSlowClientKept(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenConsole("unix:" + filepath.Join(dir, "console.sock"))
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "console.log")
	if err := c.LogTo(logPath, t.Output()); err != nil {
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
	// 8 rings: a Unix socket's own buffer (about 200 KiB by default)
	// plus one ring must not be able to hold it all, or a client whose
	// writer kept up would rightly get every byte (it did, under load,
	// with 4 rings), while console.log (logfile.Max, 1 MiB) holds it all.
	for total < 8*ConsoleRing {
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
	// own buffer, at most ConsoleRing of the 512 KiB reached it.
	if len(got) >= total {
		t.Fatalf("the client got all %d bytes: nothing was bounded", len(got))
	}
	tail := string(got[len(got)-ConsoleRing:])
	if strings.Count(tail, string(line)) < ConsoleRing/len(line)-2 {
		t.Fatalf("the last %d bytes are not the newest lines", ConsoleRing)
	}
	// Bytes read plus bytes reported dropped are the bytes written.
	marker := regexp.MustCompile(`\r\n\[xeno: (\d+) bytes of console output dropped\]\r\n`)
	ms := marker.FindAllSubmatch(got, -1)
	if len(ms) == 0 {
		t.Fatal("bytes were dropped without a marker")
	}
	dropped := 0
	for _, m := range ms {
		n, _ := strconv.Atoi(string(m[1]))
		dropped += n
	}
	if kept := len(marker.ReplaceAll(got, nil)); kept+dropped != total+4 {
		t.Errorf("read %d bytes, %d reported dropped in %d markers; %d were written", kept, dropped, len(ms), total+4)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat(string(line), total/len(line)) + "END\n"; string(b) != want {
		t.Errorf("console.log holds %d bytes, want all %d written", len(b), len(want))
	}
}
