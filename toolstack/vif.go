package toolstack

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/xeno-hv/xeno/internal/ipparam"
)

// Vif is one network device: an xl vifspec (xl-network-configuration(5)),
// resolved. The hv serves it as virtio-net on a tap that xl makes.
type Vif struct {
	MAC string `json:"mac"`
	// MACAuto says MAC was derived (DeriveMAC), not given.
	MACAuto bool   `json:"mac_auto,omitempty"`
	Bridge  string `json:"bridge"`
	// Vifname is the tap's name if the spec gave one; empty means
	// TapName's vifDOMID.DEVID.
	Vifname string `json:"vifname,omitempty"`
	// IP is the guest's address as ADDR/PREFIX, Gateway its router;
	// both go to the guest on its kernel command line (IPParam).
	IP      string `json:"ip,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Rate    *Rate  `json:"rate,omitempty"`
}

// Rate is xl's credit-based rate limit: Burst bytes of credit, refilled
// every Interval microseconds, which is BytesPerSec on average.
type Rate struct {
	Spec        string `json:"spec"` // as written, e.g. "10Mb/s@20ms"
	BytesPerSec uint64 `json:"bytes_per_s"`
	IntervalUS  uint64 `json:"interval_us"`
	Burst       uint64 `json:"burst_bytes"`
}

// DefaultBridge is xl's default bridge.
const DefaultBridge = "xenbr0"

// DefaultPrefix is the prefix length of an ip= given without one.
const DefaultPrefix = ipparam.DefaultPrefix

// DefaultRateInterval is xl's credit interval when rate= names none.
const DefaultRateInterval = 50000 // µs

// maxVirtio is how many virtio-mmio devices the hv's bus has (disks and
// vifs together; hv/vm/bus.go).
const maxVirtio = 8

// ifnameRE is what Linux takes as an interface name (dev_valid_name: at
// most IFNAMSIZ-1 bytes, no '/', ':' or space), narrowed to the
// characters that need no quoting anywhere.
var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

func checkIfname(what, s string) error {
	if !ifnameRE.MatchString(s) || s == "." || s == ".." {
		return fmt.Errorf("%s %q: want a Linux interface name, 1-15 of A-Z a-z 0-9 _ . -", what, s)
	}
	return nil
}

// refusedVifKeys are xl vifspec keys xeno knows and does not support,
// with the reason. A key in neither this nor ParseVifspec's switch is
// unknown: both are errors, as a network that silently differs from the
// config is worse than none.
var refusedVifKeys = map[string]string{
	"script":     "xeno runs no hotplug scripts; xl itself puts the tap on bridge=",
	"backend":    "xeno has no driver domains; the hv is every device's backend",
	"gatewaydev": "xeno has no vif-route or vif-nat; use bridge=",
	"netdev":     "xeno has no vif-route or vif-nat; use bridge=",
	"forwarddev": "xeno has no vif-openvswitch or forwarding; use bridge=",
	"devid":      "a vif's device id is its place in the list",
	"mtu":        "xeno's tap takes the bridge's MTU; the guest sets its own",
	"accel":      "xeno has no netfront acceleration",
	"ip6":        "ip= configures IPv4 only",
}

// ParseVifspec reads one vifspec: comma-separated KEY=VALUE, every key
// optional (” is a vif with every default). It does not apply defaults
// (Resolve does, with the domain's UUID for the MAC).
func ParseVifspec(spec string) (Vif, error) {
	var v Vif
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, val, ok := strings.Cut(part, "=")
		key = strings.TrimSpace(key)
		if !ok {
			if why, known := refusedVifKeys[key]; known {
				return v, fmt.Errorf("%s is not supported: %s", key, why)
			}
			switch key {
			case "trusted", "untrusted":
				return v, fmt.Errorf("%s is not supported: xeno has one kind of vif", key)
			}
			return v, fmt.Errorf("%q is not KEY=VALUE (want mac=, bridge=, ip=, gateway=, rate=, vifname=, model=, type=)", part)
		}
		val = strings.TrimSpace(val)
		if seen[key] {
			return v, fmt.Errorf("%s is given twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "mac":
			v.MAC, err = parseMAC(val)
		case "bridge":
			v.Bridge, err = val, checkIfname("bridge", val)
		case "vifname":
			v.Vifname, err = val, checkIfname("vifname", val)
		case "ip":
			v.IP, err = parseIP(val)
		case "gateway":
			// Checked against ip= below, which may come after it.
			if a, perr := netip.ParseAddr(val); perr != nil || !a.Is4() {
				err = fmt.Errorf("gateway %q: want an IPv4 address such as 10.0.0.1", val)
			} else {
				v.Gateway = a.String()
			}
		case "rate":
			var r Rate
			r, err = ParseRate(val)
			v.Rate = &r
		case "model":
			if val != "virtio" && val != "virtio-net" {
				err = fmt.Errorf("model=%s: xeno's only network device is virtio-net (model=virtio-net)", val)
			}
		case "type":
			if val != "vif" {
				err = fmt.Errorf("type=%s: xeno has no emulated NICs; every vif is virtio-net (type=vif)", val)
			}
		default:
			if why, known := refusedVifKeys[key]; known {
				return v, fmt.Errorf("%s= is not supported: %s", key, why)
			}
			return v, fmt.Errorf("unknown key %q (want mac=, bridge=, ip=, gateway=, rate=, vifname=, model=, type=)", key)
		}
		if err != nil {
			return v, err
		}
	}
	if v.Gateway != "" {
		if v.IP == "" {
			return v, fmt.Errorf("gateway=%s without ip=: the guest needs its own address to reach a router", v.Gateway)
		}
		if _, err := ipparam.ParseGateway(v.Gateway, netip.MustParsePrefix(v.IP)); err != nil {
			return v, err
		}
	}
	return v, nil
}

var macRE = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)

func parseMAC(s string) (string, error) {
	if !macRE.MatchString(s) {
		return "", fmt.Errorf("mac %q: want six pairs of hex digits separated by ':', such as 00:16:3e:12:34:56", s)
	}
	s = strings.ToLower(s)
	b, _ := strconv.ParseUint(s[:2], 16, 8)
	switch {
	case b&1 != 0:
		return "", fmt.Errorf("mac %s is a multicast address (bit 0 of the first byte is set); a NIC needs a unicast one", s)
	case s == "00:00:00:00:00:00":
		return "", fmt.Errorf("mac %s is all zeros", s)
	}
	return s, nil
}

// parseIP reads ip=: an IPv4 address, with /PREFIX or DefaultPrefix. xl
// passes ip= to its hotplug scripts, which take a space-separated list;
// the guest's one interface address is all xeno does with it.
func parseIP(s string) (string, error) {
	if strings.ContainsAny(s, " \t") {
		return "", fmt.Errorf("ip %q: give one address (xeno has no vif-route to take a list)", s)
	}
	p, err := ipparam.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("ip %v", err)
	}
	return p.String(), nil
}

// ParseRate reads xl's rate=RATE/s[@INTERVAL], as libxlu does: RATE is a
// number 1..2^32-1 with an optional decimal G, M or K and B (bytes) or b
// (bits), then "/s"; INTERVAL a number with s, ms or us. libxlu reads a
// bare INTERVAL as seconds where its manual says microseconds; xeno
// refuses it rather than pick one.
func ParseRate(s string) (Rate, error) {
	r := Rate{Spec: s, IntervalUS: DefaultRateInterval}
	rate, interval, hasInterval := strings.Cut(s, "@")
	num, unit := splitNumber(rate)
	if num == "" {
		return r, fmt.Errorf("rate %q: want RATE/s[@INTERVAL] such as 10Mb/s, 1MB/s or 1MB/s@20ms", s)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 || n > math.MaxUint32 {
		return r, fmt.Errorf("rate %q: %s is not a number 1-%d", s, num, uint64(math.MaxUint32))
	}
	mult, bits, ok := rateUnit(unit)
	if !ok {
		return r, fmt.Errorf("rate %q: unit %q: want B/s, KB/s, MB/s, GB/s (bytes) or b/s, Kb/s, Mb/s, Gb/s (bits); K, M and G are powers of 1000", s, unit)
	}
	r.BytesPerSec = n * mult
	if bits {
		r.BytesPerSec /= 8
	}
	if r.BytesPerSec == 0 {
		return r, fmt.Errorf("rate %q is less than one byte a second", s)
	}
	if hasInterval {
		inum, iunit := splitNumber(interval)
		iv, err := strconv.ParseUint(inum, 10, 64)
		if inum == "" || err != nil || iv == 0 || iv > math.MaxUint32 {
			return r, fmt.Errorf("rate %q: interval %q: want a number 1-%d with s, ms or us, such as 20ms", s, interval, uint64(math.MaxUint32))
		}
		switch iunit {
		case "s":
			iv *= 1e6
		case "ms":
			iv *= 1e3
		case "us":
		case "":
			return r, fmt.Errorf("rate %q: interval %q has no unit (s, ms or us)", s, interval)
		default:
			return r, fmt.Errorf("rate %q: interval unit %q: want s, ms or us", s, iunit)
		}
		if iv > math.MaxUint32 {
			return r, fmt.Errorf("rate %q: interval %q is more than %d us", s, interval, uint64(math.MaxUint32))
		}
		r.IntervalUS = iv
	}
	hi, lo := mulDiv(r.BytesPerSec, r.IntervalUS)
	if hi {
		return r, fmt.Errorf("rate %q: the credit per interval overflows", s)
	}
	r.Burst = lo
	if r.Burst == 0 {
		return r, fmt.Errorf("rate %q: the credit per interval is 0 bytes: nothing could ever be sent (raise the rate or the interval)", s)
	}
	return r, nil
}

// mulDiv is bytes/s × µs / 10^6, and whether that overflows 64 bits.
func mulDiv(bps, us uint64) (bool, uint64) {
	if us != 0 && bps > math.MaxUint64/us {
		return true, 0
	}
	return false, bps * us / 1e6
}

func splitNumber(s string) (num, unit string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

func rateUnit(u string) (mult uint64, bits, ok bool) {
	if !strings.HasSuffix(u, "/s") {
		return 0, false, false
	}
	u = strings.TrimSuffix(u, "/s")
	mult = 1
	if len(u) == 2 {
		switch u[0] {
		case 'G':
			mult = 1e9
		case 'M':
			mult = 1e6
		case 'K':
			mult = 1e3
		default:
			return 0, false, false
		}
		u = u[1:]
	}
	switch u {
	case "B":
		return mult, false, true
	case "b":
		return mult, true, true
	}
	return 0, false, false
}

// XenOUI is the organisationally unique identifier assigned to Xen,
// under which xl makes its MAC addresses.
var XenOUI = [3]byte{0x00, 0x16, 0x3e}

// DeriveMAC is a vif's MAC when the spec gives none: Xen's OUI, then the
// first three bytes of SHA-256("xeno-vif:" UUID ":" DEVID) with the top
// bit of the fourth byte of the address cleared, as libxl clears it in
// its random ones. The same domain UUID and device index give the same
// address on every boot and restart, so a guest's DHCP lease and the
// bridge's forwarding table stay right; different domains get different
// ones (a collision needs 2^23 vifs on one bridge for even odds of 1/2).
func DeriveMAC(uuid string, devid int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("xeno-vif:%s:%d", strings.ToLower(uuid), devid)))
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", XenOUI[0], XenOUI[1], XenOUI[2], h[0]&0x7f, h[1], h[2])
}

// TapName is the host-side name of domain id's vif devid, as xl names
// its backend devices: vifDOMID.DEVID, unless vifname= says otherwise.
func (v Vif) TapName(id, devid int) string {
	if v.Vifname != "" {
		return v.Vifname
	}
	return fmt.Sprintf("vif%d.%d", id, devid)
}

// IPParam is the kernel's nfsroot-style ip= parameter for vif devid
// (Documentation/admin-guide/nfs/nfsroot.rst):
// ip=<client>::<gateway>:<netmask>::eth<N>:off. xeno-init reads it; the
// xeno kernel has no IP autoconfiguration of its own. Empty without ip=.
func (v Vif) IPParam(devid int) string {
	if v.IP == "" {
		return ""
	}
	c := ipparam.Config{Addr: netip.MustParsePrefix(v.IP), Device: fmt.Sprintf("eth%d", devid)}
	if v.Gateway != "" {
		c.Gateway = netip.MustParseAddr(v.Gateway)
	}
	return c.String()
}

// HVArg is the value of the hv's --net flag for this vif on the tap at
// descriptor fd (docs/hv.md): fd=FD,mac=MAC[,rate=B/s,burst=BYTES].
func (v Vif) HVArg(fd int) string {
	s := fmt.Sprintf("fd=%d,mac=%s", fd, v.MAC)
	if v.Rate != nil {
		s += fmt.Sprintf(",rate=%d,burst=%d", v.Rate.BytesPerSec, v.Rate.Burst)
	}
	return s
}

var errVifList = errors.New(`vif must be a list of vifspecs, e.g. vif = [ "bridge=xenbr0" ]`)
