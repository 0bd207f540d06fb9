package xl

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/xeno-hv/xeno/hv/control"

	"github.com/xeno-hv/xeno/toolstack"
	"github.com/xeno-hv/xeno/toolstack/hostnet"
)

// networkListCmd is xl network-list: one line per vif of each domain, in
// xl's columns where xeno has their meaning (docs/xl.md): BE is the
// backend, which is the domain's hv process (its pid) rather than a
// domain; handle is the device id; state is the tap's own state rather
// than a xenbus number; xeno has no event channels or rings, so those
// columns give way to the tap, its bridge, the guest's address and the
// hv's counters (rx is towards the guest, tx from it).
func networkListCmd(io IO, args []string) error {
	pos, err := flags(args, nil)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want one or more domains")
	}
	ts, err := open()
	if err != nil {
		return err
	}
	recs, err := selected(io, ts, pos)
	if err != nil {
		return err
	}
	fmt.Fprintf(io.Stdout, "%-3s %-7s %-17s %6s %-10s %-15s %-15s %-18s %-18s %-18s\n", "Idx", "BE", "Mac Addr.", "handle", "state", "tap", "bridge", "ip", "rx-pkts/bytes", "tx-pkts/bytes")
	for _, r := range recs {
		be := "-"
		var live []control.NetStatus
		if r.HVAlive() {
			be = strconv.Itoa(r.HVPid)
			if in := ts.Inspect(r); in.Live != nil {
				live = in.Live.Net
			}
		}
		for i, v := range r.Config.Vifs {
			tap := v.TapName(r.ID, i)
			ip := v.IP
			if ip == "" {
				ip = "-"
			}
			rx, tx := "-", "-"
			for _, n := range live {
				if n.Index == i {
					rx = fmt.Sprintf("%d/%d", n.RxPackets, n.RxBytes)
					tx = fmt.Sprintf("%d/%d", n.TxPackets, n.TxBytes)
				}
			}
			line := fmt.Sprintf("%-3d %-7s %-17s %6d %-10s %-15s %-15s %-18s %-18s %s", i, be, v.MAC, i, tapState(r, tap, v.Bridge), tap, v.Bridge, ip, rx, tx)
			fmt.Fprintln(io.Stdout, strings.TrimRight(line, " "))
		}
	}
	return nil
}

// tapState is what the host says of a vif's tap: its operational state
// ("up", "down", ...; "unknown" is a tap no one has written to yet),
// "off-bridge" if it is not on its bridge, "no-tap" if it does not exist
// (a domain that is not running has none).
func tapState(r *toolstack.Record, tap, bridge string) string {
	if !r.HVAlive() {
		return "no-tap"
	}
	l, err := hostnet.GetLink(tap)
	if err != nil {
		return "no-tap"
	}
	if hostnet.LinkName(l.Master) != bridge {
		return "off-bridge"
	}
	if !l.Up {
		return "down"
	}
	return l.Oper
}
