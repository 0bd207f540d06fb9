// Package ipparam is the kernel's nfsroot-style ip= parameter, as xeno
// uses it to hand a guest its static IPv4 address: xl (from a vif's ip=)
// and the builder (from a recipe's [network]) write it on the guest's
// command line, and xeno-init reads it back and configures the interface,
// since the xeno kernel has no IP autoconfiguration (CONFIG_IP_PNP) of
// its own. The format is Documentation/admin-guide/nfs/nfsroot.rst's:
//
//	ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:...
//
// of which xeno writes ip=CLIENT::GW:NETMASK::DEVICE:off.
package ipparam

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Config is one interface's static address.
type Config struct {
	Addr    netip.Prefix // the address and its network's prefix length
	Gateway netip.Addr   // the default route's router; invalid if none
	Device  string       // "eth0"
}

// DefaultPrefix is the prefix length of an address given without one.
const DefaultPrefix = 24

// ParseAddress reads "10.0.0.2" (DefaultPrefix) or "10.0.0.2/16": one
// IPv4 address a host can have, with its network's prefix length.
func ParseAddress(s string) (netip.Prefix, error) {
	addr, bits := s, DefaultPrefix
	if a, p, ok := strings.Cut(s, "/"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 32 || strings.HasPrefix(p, "+") {
			return netip.Prefix{}, fmt.Errorf("%q: prefix %q is not a length 1-32", s, p)
		}
		addr, bits = a, n
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q: want an IPv4 address such as 10.0.0.2 or 10.0.0.2/24", s)
	}
	p := netip.PrefixFrom(a, bits)
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Prefix{}, fmt.Errorf("%q: not an address a host can have", s)
	}
	if bits <= 30 && (a == p.Masked().Addr() || a == last(p)) {
		return netip.Prefix{}, fmt.Errorf("%q: that is the network's or broadcast address of %s", s, p.Masked())
	}
	return p, nil
}

// ParseGateway reads a router's address and checks that a host at addr
// can reach it directly.
func ParseGateway(s string, addr netip.Prefix) (netip.Addr, error) {
	g, err := netip.ParseAddr(s)
	if err != nil || !g.Is4() {
		return netip.Addr{}, fmt.Errorf("gateway %q: want an IPv4 address such as 10.0.0.1", s)
	}
	if !addr.Masked().Contains(g) {
		return netip.Addr{}, fmt.Errorf("gateway %s is not in %s's network: the guest could not reach it", g, addr)
	}
	if g == addr.Addr() {
		return netip.Addr{}, fmt.Errorf("gateway %s is the guest's own address", g)
	}
	return g, nil
}

func last(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | (uint32(1)<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// Netmask is the dotted mask of a prefix length: 24 is 255.255.255.0.
func Netmask(bits int) netip.Addr {
	m := ^uint32(0) << (32 - bits)
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)})
}

// String is the kernel parameter: ip=CLIENT::GW:NETMASK::DEVICE:off.
func (c Config) String() string {
	gw := ""
	if c.Gateway.IsValid() {
		gw = c.Gateway.String()
	}
	return fmt.Sprintf("ip=%s::%s:%s::%s:off", c.Addr.Addr(), gw, Netmask(c.Addr.Bits()), c.Device)
}

// ErrNotStatic says an ip= asks for something other than a static
// address (ip=dhcp, ip=off, an autoconf protocol): the kernel's own
// business, which xeno-init leaves alone.
var ErrNotStatic = errors.New("not a static address")

// Parse reads the value of one ip= parameter (without "ip="). A device
// left empty is eth0, as xeno's guests have their vifs from eth0 on.
func Parse(v string) (Config, error) {
	var c Config
	f := strings.Split(v, ":")
	if len(f) < 2 {
		// ip=off, ip=dhcp, ...: the kernel's autoconfiguration.
		return c, fmt.Errorf("ip=%s: %w", v, ErrNotStatic)
	}
	get := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch get(6) {
	case "", "off", "none", "static":
	default:
		return c, fmt.Errorf("ip=%s: autoconf %q: %w", v, get(6), ErrNotStatic)
	}
	a, err := netip.ParseAddr(get(0))
	if err != nil || !a.Is4() {
		return c, fmt.Errorf("ip=%s: client address %q is not an IPv4 address", v, get(0))
	}
	bits := DefaultPrefix
	if m := get(3); m != "" {
		mask, err := netip.ParseAddr(m)
		if err != nil || !mask.Is4() {
			return c, fmt.Errorf("ip=%s: netmask %q is not a dotted IPv4 mask", v, m)
		}
		if bits, err = maskBits(mask); err != nil {
			return c, fmt.Errorf("ip=%s: netmask %s: %v", v, m, err)
		}
	}
	c.Addr = netip.PrefixFrom(a, bits)
	if g := get(2); g != "" {
		if c.Gateway, err = netip.ParseAddr(g); err != nil || !c.Gateway.Is4() {
			return c, fmt.Errorf("ip=%s: gateway %q is not an IPv4 address", v, g)
		}
	}
	c.Device = get(5)
	if c.Device == "" {
		c.Device = "eth0"
	}
	if len(c.Device) > 15 || strings.ContainsAny(c.Device, "/ ") {
		return c, fmt.Errorf("ip=%s: device %q is not an interface name", v, c.Device)
	}
	return c, nil
}

func maskBits(m netip.Addr) (int, error) {
	b := m.As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for n&(1<<31) != 0 {
		bits++
		n <<= 1
	}
	if n != 0 || bits == 0 {
		return 0, errors.New("the ones are not contiguous from the left")
	}
	return bits, nil
}
