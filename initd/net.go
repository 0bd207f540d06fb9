package initd

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/toolstack/hostnet"

	"github.com/xeno-hv/xeno/internal/ipparam"
)

// NetParams returns the static addresses that a kernel command line's
// ip= parameters give (internal/ipparam: xl writes one per vif with an
// address, the builder one for a recipe's [network]), and why each other
// ip= is not one.
func NetParams(cmdline string) ([]ipparam.Config, []error) {
	var out []ipparam.Config
	var errs []error
	for _, f := range splitCmdline(cmdline) {
		v, ok := strings.CutPrefix(f, "ip=")
		if !ok {
			continue
		}
		c, err := ipparam.Parse(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
	}
	return out, errs
}

// setUpNetwork brings lo up and gives each interface that the command
// line's ip= names its address, netmask and default route, one line for
// each. Nothing here is fatal: a guest without its network still runs
// its command, and says what went wrong.
func setUpNetwork(out io.Writer, cmdline string) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		// A kernel without INET: nothing to configure, and nothing
		// asked for unless there is an ip=.
		if strings.Contains(cmdline, "ip=") {
			fmt.Fprintf(out, "xeno-init: network: %v; ip= ignored\n", err)
		}
		return
	}
	defer unix.Close(s)
	// The kernel gives lo 127.0.0.1/8 as it comes up.
	if err := hostnet.LinkUp(s, "lo"); err != nil {
		fmt.Fprintf(out, "xeno-init: lo: %v\n", err)
	}
	cfgs, errs := NetParams(cmdline)
	for _, err := range errs {
		fmt.Fprintf(out, "xeno-init: %v; ignored\n", err)
	}
	for _, c := range cfgs {
		if err := configure(s, c); err != nil {
			fmt.Fprintf(out, "xeno-init: %s: %v\n", c, err)
			continue
		}
		line := fmt.Sprintf("xeno-init: %s %s up", c.Device, c.Addr)
		if c.Gateway.IsValid() {
			line += " via " + c.Gateway.String()
		}
		fmt.Fprintln(out, line)
	}
}

// errNoInterface is an ip= naming an interface the guest does not have.
var errNoInterface = errors.New("no such interface")

// configure gives c.Device its address and netmask, brings it up and,
// with a gateway, adds the default route through it; s is an AF_INET
// socket for the ioctls.
func configure(s int, c ipparam.Config) error {
	ifr, err := unix.NewIfreq(c.Device)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("%s: %w", c.Device, errNoInterface)
		}
		return fmt.Errorf("%s: %w", c.Device, err)
	}
	for _, a := range []struct {
		req  uint
		addr netip.Addr
		what string
	}{
		{unix.SIOCSIFADDR, c.Addr.Addr(), "address"},
		{unix.SIOCSIFNETMASK, ipparam.Netmask(c.Addr.Bits()), "netmask"},
	} {
		ifr, _ := unix.NewIfreq(c.Device)
		if err := ifr.SetInet4Addr(a.addr.AsSlice()); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(s, a.req, ifr); err != nil {
			return fmt.Errorf("%s: set %s %s: %w", c.Device, a.what, a.addr, err)
		}
	}
	if err := hostnet.LinkUp(s, c.Device); err != nil {
		return fmt.Errorf("%s: bring up: %w", c.Device, err)
	}
	if c.Gateway.IsValid() {
		if err := addDefaultRoute(s, c.Device, c.Gateway); err != nil {
			return fmt.Errorf("%s: default route via %s: %w", c.Device, c.Gateway, err)
		}
	}
	return nil
}

// rtentry is struct rtentry of <linux/route.h> on 64-bit Linux, for
// SIOCADDRT; x/sys/unix does not have it.
type rtentry struct {
	pad1    uint64
	dst     unix.RawSockaddrInet4
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	pad2    int16
	pad3    uint64
	pad4    uintptr
	metric  int16
	dev     *byte
	mtu     uint64
	window  uint64
	irtt    uint16
}

// addDefaultRoute adds 0.0.0.0/0 via gw on dev (route add default gw).
func addDefaultRoute(s int, dev string, gw netip.Addr) error {
	name, err := unix.BytePtrFromString(dev)
	if err != nil {
		return err
	}
	rt := rtentry{flags: unix.RTF_UP | unix.RTF_GATEWAY, dev: name}
	rt.dst.Family, rt.genmask.Family = unix.AF_INET, unix.AF_INET
	rt.gateway.Family, rt.gateway.Addr = unix.AF_INET, gw.As4()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s), unix.SIOCADDRT, uintptr(unsafe.Pointer(&rt)))
	if errno != 0 {
		return errno
	}
	return nil
}
