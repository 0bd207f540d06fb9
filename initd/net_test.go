package initd

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/internal/ipparam"
)

func TestNetParams(t *testing.T) {
	cfgs, errs := NetParams(`console=ttyS0 ip=10.0.0.2:::255.255.255.0::eth0:off xeno.run=/bin/sh ip=dhcp ip=10.1.0.9::10.1.0.1:255.255.0.0::eth1:off ip=bad::::::off quiet`)
	if len(cfgs) != 2 || cfgs[0].String() != "ip=10.0.0.2:::255.255.255.0::eth0:off" || cfgs[1].Device != "eth1" || cfgs[1].Gateway.String() != "10.1.0.1" {
		t.Errorf("configs %v", cfgs)
	}
	if len(errs) != 2 || !errors.Is(errs[0], ipparam.ErrNotStatic) || !strings.Contains(errs[1].Error(), `"bad"`) {
		t.Errorf("errors %v", errs)
	}
}

// setUpNetwork in a network namespace of the test's own, on taps standing
// in for virtio-net's eth0 and eth1: addresses, up, the default route,
// lo, and an ip= for a missing interface reported without harm.
func TestSetUpNetwork(t *testing.T) {
	if os.Getenv("INITD_NETNS") != t.Name() {
		if os.Geteuid() != 0 {
			t.Skip("needs root: a network namespace and taps")
		}
		for _, c := range []string{"unshare", "ip"} {
			if _, err := exec.LookPath(c); err != nil {
				t.Skipf("needs %s to set the namespace up: %v", c, err)
			}
		}
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			t.Skipf("no tun device: %v", err)
		}
		cmd := exec.Command("unshare", "-n", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "INITD_NETNS="+t.Name())
		out, err := cmd.CombinedOutput()
		t.Logf("in a network namespace:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
			t.Fatalf("the run in the namespace failed: %v", err)
		}
		return
	}
	for _, dev := range []string{"eth0", "eth1"} {
		if out, err := exec.Command("ip", "tuntap", "add", "dev", dev, "mode", "tap").CombinedOutput(); err != nil {
			t.Fatalf("ip tuntap: %v\n%s", err, out)
		}
	}
	var out bytes.Buffer
	setUpNetwork(&out, "ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off ip=10.7.0.3:::255.255.0.0::eth1:off ip=10.9.0.2:::255.255.255.0::eth5:off")
	got := out.String()
	for _, want := range []string{
		"xeno-init: eth0 10.0.0.2/24 up via 10.0.0.1\n",
		"xeno-init: eth1 10.7.0.3/16 up\n",
		"xeno-init: ip=10.9.0.2:::255.255.255.0::eth5:off: eth5: no such interface\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for dev, want := range map[string]string{"eth0": "10.0.0.2/24", "eth1": "10.7.0.3/16", "lo": "127.0.0.1/8"} {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		addrs, _ := ifc.Addrs()
		found := false
		for _, a := range addrs {
			found = found || a.String() == want
		}
		if !found || ifc.Flags&net.FlagUp == 0 {
			t.Errorf("%s: addresses %v, flags %v; want %s and up", dev, addrs, ifc.Flags, want)
		}
	}
	// /proc/net/route is this namespace's: the default route, hex
	// little-endian: 0100000A is 10.0.0.1.
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "eth0\t00000000\t0100000A\t0003") {
		t.Errorf("no default route via 10.0.0.1 on eth0:\n%s", b)
	}
	// Setting an address that is already there is no error.
	s, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	defer unix.Close(s)
	err = configure(s, ipparam.Config{Addr: netip.MustParsePrefix("10.0.0.2/24"), Device: "eth0"})
	if err != nil {
		t.Errorf("configure again: %v", err)
	}
}
