package vm

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/logfile"
)

// ConsoleRing is how much recent output a unix-socket console keeps for
// clients that connect late (xl console after boot).
const ConsoleRing = 64 << 10

// Console is the domain console: it receives UART and console-port output
// and delivers host input to the UART.
type Console struct {
	Path string // the pty or socket path, "" for stdio

	mu      sync.Mutex
	out     io.Writer // stdio or pty master; nil for a socket
	ring    []byte
	clients map[net.Conn]*consoleClient
	input   func([]byte)
	ln      net.Listener
	closers []io.Closer
	senders sync.WaitGroup
	log     *consoleLog // console.log, if LogTo was called
}

// OpenConsole opens "stdio", "pty" or "unix:PATH".
func OpenConsole(spec string) (*Console, error) {
	c := &Console{clients: make(map[net.Conn]*consoleClient)}
	switch {
	case spec == "" || spec == "stdio":
		c.out = os.Stdout
		go c.pump(os.Stdin)
	case spec == "pty":
		master, path, err := openPTY()
		if err != nil {
			return nil, err
		}
		c.out, c.Path = master, path
		c.closers = append(c.closers, master)
		go c.pump(master)
	case strings.HasPrefix(spec, "unix:"):
		path := strings.TrimPrefix(spec, "unix:")
		ln, err := listenUnix(path)
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		c.ln, c.Path = ln, path
		go c.accept()
	default:
		return nil, fmt.Errorf("console: %q: want stdio, pty or unix:PATH", spec)
	}
	return c, nil
}

// SetInput sets where host input goes (the UART).
func (c *Console) SetInput(f func([]byte)) {
	c.mu.Lock()
	c.input = f
	c.mu.Unlock()
}

func (c *Console) deliver(p []byte) {
	c.mu.Lock()
	f := c.input
	c.mu.Unlock()
	if f != nil {
		f(p)
	}
}

func (c *Console) pump(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.deliver(append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			return
		}
	}
}

// Write takes guest output.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log != nil {
		c.log.push(p)
	}
	if c.out != nil {
		return c.out.Write(p)
	}
	// Sliding rather than copying to the front: the guest writes a byte
	// at a time, and a 64 KiB copy per byte made a console flood cost
	// the hv a core.
	c.ring = append(c.ring, p...)
	if len(c.ring) > ConsoleRing {
		c.ring = c.ring[len(c.ring)-ConsoleRing:]
	}
	for _, cl := range c.clients {
		cl.push(p)
	}
	return len(p), nil
}

// consoleClient is one socket reader of the console. Guest output waits in
// a buffer of at most ConsoleRing bytes for it, so a slow reader (xl
// console on a loaded host, while the guest writes a byte per UART exit)
// neither stalls the guest nor is cut off: past the cap it loses the
// oldest bytes, never the connection (cutting it off froze the monitor's
// console.log for good), and it is told: the next bytes it gets start
// with a droppedMarker line.
type consoleClient struct {
	conn net.Conn
	wake chan struct{} // capacity 1: "buf has bytes"

	mu   sync.Mutex
	buf  []byte
	lost int
}

func newConsoleClient(conn net.Conn, backlog []byte) *consoleClient {
	cl := &consoleClient{conn: conn, wake: make(chan struct{}, 1)}
	cl.push(backlog)
	return cl
}

func (cl *consoleClient) push(p []byte) {
	cl.mu.Lock()
	cl.buf = append(cl.buf, p...)
	if over := len(cl.buf) - ConsoleRing; over > 0 {
		cl.buf = cl.buf[over:]
		cl.lost += over
	}
	cl.mu.Unlock()
	select {
	case cl.wake <- struct{}{}:
	default:
	}
}

// droppedMarker is the line a console client reads where its buffer lost
// bytes (docs/hv.md): never a silent gap.
const droppedMarker = "\r\n[xeno: %d bytes of console output dropped]\r\n"

// send writes what is buffered until wake is closed or the reader goes;
// then what is left (Close bounds it), and closes the connection.
func (cl *consoleClient) send() {
	defer cl.conn.Close()
	var out []byte
	flush := func() error {
		cl.mu.Lock()
		out = out[:0]
		if cl.lost > 0 {
			out = fmt.Appendf(out, droppedMarker, cl.lost)
			cl.lost = 0
		}
		out, cl.buf = append(out, cl.buf...), cl.buf[:0]
		cl.mu.Unlock()
		if len(out) == 0 {
			return nil
		}
		_, err := cl.conn.Write(out)
		return err
	}
	for range cl.wake {
		if flush() != nil {
			return
		}
	}
	flush()
}

// consoleFlushBound is how long a client may take to read the console's
// last bytes once the domain has ended.
const consoleFlushBound = 2 * time.Second

func (c *Console) accept() {
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		cl := newConsoleClient(conn, c.ring)
		c.clients[conn] = cl
		c.mu.Unlock()
		c.senders.Add(1)
		go func() {
			defer c.senders.Done()
			cl.send()
		}()
		go func() {
			c.pump(conn)
			c.drop(conn)
		}()
	}
}

// drop forgets a client; its sender sends what is left and closes it.
func (c *Console) drop(conn net.Conn) {
	c.mu.Lock()
	if cl, ok := c.clients[conn]; ok {
		delete(c.clients, conn)
		close(cl.wake)
	}
	c.mu.Unlock()
}

// Close stops the console and removes its socket.
func (c *Console) Close() {
	if c.ln != nil {
		c.ln.Close()
		os.Remove(c.Path)
	}
	c.mu.Lock()
	conns := make([]net.Conn, 0, len(c.clients))
	for conn := range c.clients {
		conns = append(conns, conn)
	}
	c.mu.Unlock()
	for _, conn := range conns {
		// The domain's last lines (its poweroff) reach the clients
		// first, within a bound: a client that stopped reading must not
		// hold the hv's exit.
		conn.SetWriteDeadline(time.Now().Add(consoleFlushBound))
		c.drop(conn)
	}
	c.senders.Wait()
	for _, cl := range c.closers {
		cl.Close()
	}
	c.mu.Lock()
	l := c.log
	c.log = nil
	c.mu.Unlock()
	if l != nil {
		l.close()
	}
}

// LogTo copies everything the guest prints, from now on, to the capped
// log file path (hv/logfile): console.log, which the hv writes itself so
// that it loses nothing while the domain runs, whoever reads the socket
// and however slowly. Write errors are reported once to errs.
func (c *Console) LogTo(path string, errs io.Writer) error {
	f, err := logfile.Open(path, logfile.Max)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	l := &consoleLog{f: f, errs: errs, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go l.run()
	c.mu.Lock()
	c.log = l
	c.mu.Unlock()
	return nil
}

// consoleLogBatch is how much guest output may wait for the log writer
// before the guest's own write waits for the file instead: the log is
// bounded and lossless, and a flood costs a file write per batch rather
// than per byte.
const consoleLogBatch = 64 << 10

// consoleLog writes console output to console.log from a goroutine of its
// own, in batches.
type consoleLog struct {
	f    *logfile.File
	errs io.Writer
	wake chan struct{} // capacity 1: "buf has bytes"
	done chan struct{} // closed when run returns

	mu     sync.Mutex
	buf    []byte
	failed bool // a write error has been reported
}

func (l *consoleLog) push(p []byte) {
	l.mu.Lock()
	l.buf = append(l.buf, p...)
	if len(l.buf) >= consoleLogBatch {
		l.flushLocked()
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *consoleLog) run() {
	defer close(l.done)
	for range l.wake {
		l.mu.Lock()
		l.flushLocked()
		l.mu.Unlock()
	}
}

func (l *consoleLog) flushLocked() {
	if len(l.buf) == 0 {
		return
	}
	_, err := l.f.Write(l.buf)
	l.buf = l.buf[:0]
	if err != nil && !l.failed {
		l.failed = true
		fmt.Fprintf(l.errs, "hv: console log: %v (console output is missing from it; later errors are not reported)\n", err)
	}
}

// close writes what is left and closes the file; no push may follow.
func (l *consoleLog) close() {
	close(l.wake)
	<-l.done
	l.mu.Lock()
	l.flushLocked()
	l.mu.Unlock()
	l.f.Close()
}

// listenUnix listens on a UNIX socket of mode 0600, replacing a stale
// socket file but never a live one.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if conn, err := net.Dial("unix", path); err == nil {
			conn.Close()
			return nil, fmt.Errorf("%s is in use by a live process", path)
		}
		os.Remove(path)
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// openPTY opens a pseudo-terminal in raw mode and returns its master and
// the slave's path.
func openPTY() (*os.File, string, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("console: %w", err)
	}
	unlock := int32(0)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		return nil, "", fmt.Errorf("console: unlock pty: %w", e)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, "", fmt.Errorf("console: pty number: %w", err)
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	if t, err := unix.IoctlGetTermios(int(m.Fd()), unix.TCGETS); err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		_ = unix.IoctlSetTermios(int(m.Fd()), unix.TCSETS, t)
	}
	return m, path, nil
}
