// Package hostnet is the host side of a domain's network: the tap that
// the hv serves as virtio-net, plugged into a Linux bridge, as Xen's
// vif-bridge hotplug script plugs a vif. It talks to the kernel through
// /dev/net/tun, ioctls and rtnetlink; it runs no programs.
//
// A tap is opened without IFF_PERSIST: it exists while a descriptor to it
// is open, and the last one is the hv's, so the kernel removes the tap
// (and takes it off its bridge) whenever the hv ends, however it ends.
package hostnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoLink says no network interface has the name asked for.
var ErrNoLink = errors.New("no such network interface")

// Link is what rtnetlink says about one network interface.
type Link struct {
	Name   string
	Index  int
	Kind   string // IFLA_INFO_KIND: "bridge", "tun", "veth"; "" for a physical one
	Master int    // the index of the bridge it is on, 0 if none
	Up     bool   // IFF_UP: administratively up
	Oper   string // operational state: "up", "down", "unknown", ...
	MAC    net.HardwareAddr
}

// GetLink asks rtnetlink for the interface called name; ErrNoLink (wrapped)
// if there is none.
func GetLink(name string) (*Link, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("hostnet: %s: %w", name, ErrNoLink)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("hostnet: netlink: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("hostnet: netlink: %w", err)
	}
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfInfomsg)
	req = appendAttr(req, unix.IFLA_IFNAME, append([]byte(name), 0))
	le := binary.LittleEndian
	le.PutUint32(req[0:], uint32(len(req)))
	le.PutUint16(req[4:], unix.RTM_GETLINK)
	le.PutUint16(req[6:], unix.NLM_F_REQUEST)
	le.PutUint32(req[8:], 1) // sequence
	req[unix.SizeofNlMsghdr] = unix.AF_UNSPEC
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("hostnet: netlink: %w", err)
	}
	buf := make([]byte, 32<<10)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return nil, fmt.Errorf("hostnet: netlink: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("hostnet: netlink: a reply of %d bytes that does not parse", n)
	}
	m := msgs[0]
	switch m.Header.Type {
	case unix.NLMSG_ERROR:
		if len(m.Data) >= 4 {
			errno := syscall.Errno(-int32(le.Uint32(m.Data)))
			if errno == unix.ENODEV {
				return nil, fmt.Errorf("hostnet: %s: %w", name, ErrNoLink)
			}
			return nil, fmt.Errorf("hostnet: %s: %w", name, errno)
		}
		return nil, fmt.Errorf("hostnet: %s: a netlink error without a code", name)
	case unix.RTM_NEWLINK:
	default:
		return nil, fmt.Errorf("hostnet: %s: netlink answered message type %d", name, m.Header.Type)
	}
	if len(m.Data) < unix.SizeofIfInfomsg {
		return nil, fmt.Errorf("hostnet: %s: a short RTM_NEWLINK", name)
	}
	l := &Link{Index: int(int32(le.Uint32(m.Data[4:]))), Oper: "unknown"}
	l.Up = le.Uint32(m.Data[8:])&unix.IFF_UP != 0
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil {
		return nil, fmt.Errorf("hostnet: %s: %w", name, err)
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFLA_IFNAME:
			l.Name = cstring(a.Value)
		case unix.IFLA_ADDRESS:
			l.MAC = net.HardwareAddr(append([]byte(nil), a.Value...))
		case unix.IFLA_MASTER:
			if len(a.Value) >= 4 {
				l.Master = int(le.Uint32(a.Value))
			}
		case unix.IFLA_OPERSTATE:
			if len(a.Value) >= 1 {
				l.Oper = operState(a.Value[0])
			}
		case unix.IFLA_LINKINFO:
			// Nested: IFLA_INFO_KIND is a NUL-ended string.
			for b := a.Value; len(b) >= 4; {
				alen, typ := int(le.Uint16(b)), le.Uint16(b[2:])&^unix.NLA_F_NESTED
				if alen < 4 || alen > len(b) {
					break
				}
				if typ == unix.IFLA_INFO_KIND {
					l.Kind = cstring(b[4:alen])
				}
				b = b[min(len(b), (alen+3)&^3):]
			}
		}
	}
	return l, nil
}

func appendAttr(b []byte, typ uint16, val []byte) []byte {
	h := make([]byte, 4)
	binary.LittleEndian.PutUint16(h, uint16(4+len(val)))
	binary.LittleEndian.PutUint16(h[2:], typ)
	b = append(append(b, h...), val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// operState names RFC 2863's IF_OPER_* values as ip(8) prints them.
func operState(v byte) string {
	names := []string{"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"}
	if int(v) < len(names) {
		return names[v]
	}
	return "unknown"
}

// CheckBridge says why name cannot take a vif: it does not exist or is
// not a Linux bridge. Xen's hotplug script fails the same way, later.
func CheckBridge(name string) error {
	l, err := GetLink(name)
	if errors.Is(err, ErrNoLink) {
		return fmt.Errorf("bridge %s does not exist (create it first, e.g. ip link add %s type bridge && ip link set %s up)", name, name, name)
	}
	if err != nil {
		return err
	}
	if l.Kind != "bridge" {
		kind := l.Kind
		if kind == "" {
			kind = "a device"
		}
		return fmt.Errorf("%s is not a bridge but %s", name, kind)
	}
	return nil
}

// OpenTap makes the tap name (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, as the hv's
// virtio-net wants it) and returns its descriptor, close-on-exec: hand it
// to the hv through exec.Cmd.ExtraFiles. A name that exists already is
// refused rather than taken over: it may be another domain's.
func OpenTap(name string) (*os.File, error) {
	if _, err := GetLink(name); err == nil {
		return nil, fmt.Errorf("hostnet: tap %s: an interface of that name exists already", name)
	} else if !errors.Is(err, ErrNoLink) {
		return nil, err
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hostnet: tap %s: /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hostnet: tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hostnet: tap %s: TUNSETIFF: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// HostMAC is the address of every tap's host side, as Xen's vif-bridge
// gives its vifs: the highest unicast one, so that a bridge, which takes
// the lowest address among its ports, never takes a vif's and changes
// address as domains come and go.
var HostMAC = net.HardwareAddr{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff}

// Plug gives tap HostMAC, puts it on bridge and brings it up.
func Plug(tap, bridge string) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hostnet: %w", err)
	}
	defer unix.Close(s)
	if err := setHWAddr(s, tap, HostMAC); err != nil {
		return fmt.Errorf("hostnet: tap %s: set its address: %w", tap, err)
	}
	l, err := GetLink(tap)
	if err != nil {
		return err
	}
	br, err := unix.NewIfreq(bridge)
	if err != nil {
		return fmt.Errorf("hostnet: bridge %s: %w", bridge, err)
	}
	br.SetUint32(uint32(l.Index))
	if err := unix.IoctlIfreq(s, unix.SIOCBRADDIF, br); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("hostnet: bridge %s does not exist", bridge)
		}
		return fmt.Errorf("hostnet: put %s on bridge %s: %w", tap, bridge, err)
	}
	if err := LinkUp(s, tap); err != nil {
		return fmt.Errorf("hostnet: bring %s up: %w", tap, err)
	}
	return nil
}

// LinkUp sets IFF_UP on interface name through s, any AF_INET socket.
// xeno-init brings up the guest's interfaces with it too.
func LinkUp(s int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr)
}

// ifreqHW is struct ifreq with ifr_hwaddr, which unix.Ifreq has no
// setter for.
type ifreqHW struct {
	Name   [unix.IFNAMSIZ]byte
	Family uint16
	Data   [14]byte
	_      [8]byte
}

func setHWAddr(s int, name string, mac net.HardwareAddr) error {
	var req ifreqHW
	copy(req.Name[:], name)
	req.Family = unix.ARPHRD_ETHER
	copy(req.Data[:], mac)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s), unix.SIOCSIFHWADDR, uintptr(unsafe.Pointer(&req)))
	if errno != 0 {
		return errno
	}
	return nil
}

// LinkName returns the name of the interface with index i, "" if none.
func LinkName(i int) string {
	if i <= 0 {
		return ""
	}
	ifc, err := net.InterfaceByIndex(i)
	if err != nil {
		return ""
	}
	return ifc.Name
}
