package virtio

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// tapFlags are what a tap must have been opened with: an Ethernet
// device, no packet-information prefix, and the virtio header.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// TapFile is a Linux tap device used through the netpoller: reads park
// the receive goroutine rather than a thread.
type TapFile struct {
	f    *os.File
	rc   syscall.RawConn
	name string
}

// OpenTap attaches to the existing tap interface name through
// /dev/net/tun (TUNSETIFF), as IFF_TAP|IFF_NO_PI|IFF_VNET_HDR.
func OpenTap(name string) (*TapFile, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("virtio: tap %q: %w", name, err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("virtio: tap %s: /dev/net/tun: %w", name, err)
	}
	ifr.SetUint16(tapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("virtio: tap %s: TUNSETIFF: %w", name, err)
	}
	t, err := TapFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return t, nil
}

// TapFromFD takes over fd, a tap opened IFF_TAP|IFF_NO_PI|IFF_VNET_HDR
// by the hv's parent. It sets the 12-byte virtio header and makes the
// descriptor non-blocking (a flag of the open file, which the parent
// shares if it kept its copy).
func TapFromFD(fd int) (*TapFile, error) {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return nil, fmt.Errorf("virtio: fd %d is not a tap (TUNGETIFF: %w)", fd, err)
	}
	name := ifr.Name()
	if got := ifr.Uint16(); got&tapFlags != tapFlags {
		return nil, fmt.Errorf("virtio: tap %s (fd %d): flags %#x lack IFF_TAP|IFF_NO_PI|IFF_VNET_HDR", name, fd, got)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, NetHdrLen); err != nil {
		return nil, fmt.Errorf("virtio: tap %s: TUNSETVNETHDRSZ: %w", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("virtio: tap %s: %w", name, err)
	}
	return newTapFile(os.NewFile(uintptr(fd), "tap "+name), name)
}

func newTapFile(f *os.File, name string) (*TapFile, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("virtio: tap %s: %w", name, err)
	}
	return &TapFile{f: f, rc: rc, name: name}, nil
}

// Name is the tap interface's name.
func (t *TapFile) Name() string { return t.name }

// Read implements Tap.
func (t *TapFile) Read(p []byte) (int, error) { return t.f.Read(p) }

// Writev implements Tap.
func (t *TapFile) Writev(bufs [][]byte) (n int, err error) {
	werr := t.rc.Write(func(fd uintptr) bool {
		n, err = unix.Writev(int(fd), bufs)
		return err != unix.EAGAIN
	})
	if werr != nil {
		return 0, werr
	}
	return n, err
}

// SetOffload implements Tap.
func (t *TapFile) SetOffload(flags int) (err error) {
	cerr := t.rc.Control(func(fd uintptr) {
		err = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// Close implements Tap.
func (t *TapFile) Close() error { return t.f.Close() }
