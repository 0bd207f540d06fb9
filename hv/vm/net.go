package vm

import (
	"crypto/sha256"
	"fmt"
	"net"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/virtio"
)

// Net is one virtio-net device on a tap.
type Net struct {
	// FD is a tap descriptor inherited from the parent, opened
	// IFF_TAP|IFF_NO_PI|IFF_VNET_HDR; used when Tap is empty.
	FD int
	// Tap names an existing tap interface the hv attaches to itself.
	Tap   string
	MAC   net.HardwareAddr // nil: DefaultMAC
	Limit virtio.RateLimit
}

// netDev is a running network device and what its status reports.
type netDev struct {
	dev   *virtio.Net
	tap   string
	mac   net.HardwareAddr
	limit virtio.RateLimit
}

// DefaultMAC is the MAC of network device i of a domain given none: Xen's
// 00:16:3e prefix and three bytes from the domain's UUID (or name) and
// i, so that it stays the same across boots. The top bit of the fourth
// byte is clear, as in libxl's generated addresses.
func DefaultMAC(uuid, name string, i int) net.HardwareAddr {
	id := uuid
	if id == "" {
		id = name
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("xeno-net\x00%s\x00%d", id, i)))
	return net.HardwareAddr{0x00, 0x16, 0x3e, h[0] & 0x7f, h[1], h[2]}
}

// addNets opens each network device's tap and puts the device on the
// next virtio-mmio window.
func (v *VM) addNets(irq func(gsi uint32) func(level bool)) error {
	for i, nc := range v.cfg.Nets {
		var (
			tap *virtio.TapFile
			err error
		)
		if nc.Tap != "" {
			tap, err = virtio.OpenTap(nc.Tap)
		} else {
			tap, err = virtio.TapFromFD(nc.FD)
		}
		if err != nil {
			return fmt.Errorf("vm: net %d: %w", i, err)
		}
		mac := nc.MAC
		if mac == nil {
			mac = DefaultMAC(v.cfg.UUID, v.cfg.Name, i)
		}
		n, err := virtio.NewNet(tap, virtio.NetConfig{MAC: mac, Limit: nc.Limit, Log: v.cfg.Log})
		if err != nil {
			tap.Close()
			return fmt.Errorf("vm: net %d: %w", i, err)
		}
		v.dev.nets = append(v.dev.nets, netDev{dev: n, tap: tap.Name(), mac: mac, limit: nc.Limit})
		if err := v.addVirtio(fmt.Sprintf("net %s on %s", mac, tap.Name()), n, irq); err != nil {
			return err
		}
		v.logf("net %d: %s on tap %s, %s", i, mac, tap.Name(), limitText(nc.Limit))
	}
	return nil
}

func limitText(l virtio.RateLimit) string {
	if !l.Enabled() {
		return "no rate limit"
	}
	return "rate limit " + l.String()
}

// netStatus reports each network device for the control socket.
func (v *VM) netStatus() []control.NetStatus {
	var out []control.NetStatus
	for i, n := range v.dev.nets {
		st := n.dev.Stats()
		s := control.NetStatus{
			Index: i, MAC: n.mac.String(), Tap: n.tap,
			RxPackets: st.RxPackets, RxBytes: st.RxBytes, RxDropped: st.RxDropped,
			TxPackets: st.TxPackets, TxBytes: st.TxBytes, TxDropped: st.TxDropped,
		}
		if n.limit.Enabled() {
			s.RateLimit = &control.NetRateLimit{
				BytesPerSec: n.limit.Bytes, Burst: n.limit.Burst, PacketsPerSec: n.limit.Ops,
				RxThrottled: st.RxThrottled, TxThrottled: st.TxThrottled,
			}
		}
		out = append(out, s)
	}
	return out
}
