package hv_test

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
)

// A unix-socket console keeps the output for a client that connects
// late, like `xl console` after boot.
func TestConsoleUnixSocketLateClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "console.sock")
	l := startHV(t, "--kernel", guest(t, "powerbutton"), "--memory", "64", "--console", "unix:"+sock)
	// The guest's "waiting" line is written before anyone connects; the
	// control socket answering shows the domain is up.
	l.call(t, control.CmdStatus)
	time.Sleep(300 * time.Millisecond)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("console socket: %v %v", err, fi)
	}
	for i := 0; i < 2; i++ { // two clients, one after the other, both see it
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || line != "XTF powerbutton waiting\n" {
			t.Fatalf("client %d read %q, %v", i, line, err)
		}
	}
	if strings.Contains(l.out.String(), "XTF") {
		t.Errorf("console output also went to stdout:\n%s", l.out)
	}
	l.call(t, control.CmdDestroy)
	expectEnd(t, l.wait(t), control.ReasonDestroyed)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("console socket left behind: %v", err)
	}
}

func TestConsolePTY(t *testing.T) {
	l := startHV(t, "--kernel", guest(t, "powerbutton"), "--memory", "64", "--console", "pty")
	l.call(t, control.CmdStatus)
	m := regexp.MustCompile(`hv: console on (/dev/pts/\d+)`).FindStringSubmatch(l.errout.String())
	if m == nil {
		t.Fatalf("no pty path on stderr:\n%s", l.errout)
	}
	f, err := os.Open(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(f).ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if !strings.Contains(line, "XTF powerbutton waiting") {
			t.Errorf("pty read %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("nothing on the pty")
	}
	l.call(t, control.CmdDestroy)
	expectEnd(t, l.wait(t), control.ReasonDestroyed)
}
