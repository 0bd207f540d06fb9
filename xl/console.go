package xl

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/term"

	"github.com/xeno-hv/xeno/toolstack"
)

// escapeChar is ^], as in xl console (and telnet).
const escapeChar = 0x1d

func consoleCmd(io IO, args []string) error {
	dom, err := oneDom(args)
	if err != nil {
		return err
	}
	ts, err := open()
	if err != nil {
		return err
	}
	return attach(io, ts, dom)
}

// attach connects the terminal to a domain's console socket until the
// domain ends or the user types ^]. A terminal on stdin is put in raw
// mode, so that keys reach the guest as typed.
func attach(iox IO, ts *toolstack.Toolstack, dom string) error {
	recs, err := selected(iox, ts, []string{dom})
	if err != nil {
		return err
	}
	r := recs[0]
	if r.State == toolstack.StateRunning && r.HVAlive() {
		toolstack.AwaitListening(r)
	}
	// The socket's directory is the jailed hv's: connect to a socket,
	// never through a symlink it may have planted.
	if fi, err := os.Lstat(r.Console); err == nil && fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("domain %s: %s is not a socket", r.Name, r.Console)
	}
	conn, err := net.Dial("unix", r.Console)
	if err != nil {
		// A stopped domain (preserved or crashed) has no console, but
		// its monitor kept what it printed.
		logPath := ts.State.ConsoleLog(r.ID)
		if b, lerr := os.ReadFile(logPath); lerr == nil && r.State != toolstack.StateRunning {
			fmt.Fprintf(iox.Stderr, "xl console: domain %s is not running (state %s); its console log %s follows\n", r.Name, r.State, logPath)
			_, err := iox.Stdout.Write(b)
			return err
		}
		return fmt.Errorf("domain %s has no console (state %s): %w", r.Name, r.State, err)
	}
	defer conn.Close()
	if f, ok := iox.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err == nil {
			defer term.Restore(int(f.Fd()), old)
		}
	}
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(iox.Stdout, conn)
		done <- err
	}()
	if iox.Stdin != nil {
		go func() {
			buf := make([]byte, 256)
			for {
				n, err := iox.Stdin.Read(buf)
				for i := 0; i < n; i++ {
					if buf[i] == escapeChar {
						if i > 0 {
							_, _ = conn.Write(buf[:i])
						}
						done <- errEscape
						return
					}
				}
				if n > 0 {
					if _, werr := conn.Write(buf[:n]); werr != nil {
						done <- werr
						return
					}
				}
				if err != nil {
					// End of input: keep showing output until the
					// domain's console closes.
					return
				}
			}
		}()
	}
	err = <-done
	if errors.Is(err, errEscape) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

var errEscape = errors.New("escape")
