package initd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/abi"
)

// The command channel: xeno-init answers one-line requests on vsock
// port abi.ChannelPort, so that xl can ask a running guest things
// without its serial console (xl query, docs/xl.md).
const (
	channelMaxLine  = 256              // a longer request line ends the connection
	channelMaxConns = 8                // clients served at once; more are closed
	channelIdle     = 10 * time.Second // a client silent this long is closed
)

// Channel answers the command channel's requests.
type Channel struct {
	// Interface is the interface line xeno-init printed at boot.
	Interface string
	// Uptime is the system's uptime.
	Uptime func() (time.Duration, error)
}

// Answer is the one-line answer to request req: "interface" gives the
// interface line; "health" gives "ok uptime Ns" (no recipe has a health
// check of its own yet).
func (c *Channel) Answer(req string) string {
	switch req {
	case "interface":
		return c.Interface
	case "health":
		up, err := c.Uptime()
		if err != nil {
			return "error " + err.Error()
		}
		return fmt.Sprintf("ok uptime %.2fs", up.Seconds())
	}
	return fmt.Sprintf("error unknown request %q: want interface or health", req)
}

// ServeConn answers each request line on rw until EOF or a line longer
// than channelMaxLine.
func (c *Channel) ServeConn(rw io.ReadWriter) error {
	br := bufio.NewReaderSize(rw, channelMaxLine)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			fmt.Fprintf(rw, "error request longer than %d bytes\n", channelMaxLine)
			return err
		}
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(rw, "%s\n", c.Answer(strings.TrimSpace(string(line)))); err != nil {
			return err
		}
	}
}

// procUptime reads /proc/uptime.
func procUptime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("/proc/uptime is empty")
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/uptime: %w", err)
	}
	return time.Duration(s * float64(time.Second)), nil
}

// listenVsock listens on vsock port for any CID. Go's net package has
// no AF_VSOCK, so this is the system calls themselves.
func listenVsock(port uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, channelMaxConns); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("vsock listen: %w", err)
	}
	return fd, nil
}

// serveChannel accepts clients on the listening fd forever.
func serveChannel(fd int, c *Channel) {
	slots := make(chan struct{}, channelMaxConns)
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			time.Sleep(100 * time.Millisecond) // out of memory or fds: do not spin
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			unix.Close(nfd)
			continue
		}
		// Blocking reads, bounded by SO_RCVTIMEO: a silent client ends.
		tv := unix.NsecToTimeval(channelIdle.Nanoseconds())
		unix.SetsockoptTimeval(nfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		f := os.NewFile(uintptr(nfd), "vsock")
		go func() {
			defer func() { <-slots }()
			defer f.Close()
			c.ServeConn(f)
		}()
	}
}

// announce tells the host, on its port abi.ChannelPort (the Unix socket
// <uds>_1024 beside the domain's state), that xeno-init is up, with its
// interface line. Nobody need listen: the hv then refuses the connect.
func announce(line string) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "vsock")
	defer f.Close()
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: abi.ChannelPort}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "xeno-init ready: %s\n", line)
	return err
}

// startChannel serves the command channel and announces it, or says on
// out why there is none (no virtio-vsock device, say).
func startChannel(out io.Writer, iface string) {
	fd, err := listenVsock(abi.ChannelPort)
	if err != nil {
		fmt.Fprintf(out, "xeno-init: no command channel: %v\n", err)
		return
	}
	fmt.Fprintf(out, "xeno-init: command channel on vsock port %d\n", abi.ChannelPort)
	go serveChannel(fd, &Channel{Interface: iface, Uptime: procUptime})
	go announce(iface)
}
