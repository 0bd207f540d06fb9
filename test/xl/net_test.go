package xl_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/toolstack/hostnet"
)

// inNetns moves the calling test's goroutine, for the rest of the test,
// into a network namespace of its own, with lo up: xl, its monitors and
// hvs start from this thread and inherit it, so the bridges and taps the
// test makes are seen by nothing else, and no packet leaves. The thread
// is never unlocked: the runtime ends it with the test's goroutine.
func inNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace, /dev/net/tun and bridges")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no tun device: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("needs ip(8) to make the test's bridge: %v", err)
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("no network namespace: %v", err)
	}
	ipCmd(t, "link", "set", "lo", "up")
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// makeBridge makes bridge name, up, in the test's namespace.
func makeBridge(t *testing.T, name string) *hostnet.Link {
	t.Helper()
	ipCmd(t, "link", "add", name, "type", "bridge")
	ipCmd(t, "link", "set", name, "up")
	l, err := hostnet.GetLink(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A vif on a bridge that does not exist is refused by the check, naming
// the bridge, before anything starts; xl create -n shows it. No KVM needed.
func TestVifMissingBridge(t *testing.T) {
	e := newEnv(t)
	k := guest(t, "shutdown")
	cfg := e.write("nb.cfg", fmt.Sprintf("name = \"nb\"\nkernel = %q\nmemory = 32\nvif = [ 'bridge=xenbr-gone9' ]\n", k))
	_, errs, code := e.run("create", cfg)
	if code != 1 || !strings.Contains(errs, "refused (network, rule bridge)") || !strings.Contains(errs, "bridge xenbr-gone9 does not exist") {
		t.Errorf("create: exit %d, stderr %q", code, errs)
	}
	o, _, _ := e.run("create", "-n", cfg)
	if !strings.Contains(o, "check vif 0") || !strings.Contains(o, "REFUSED") || !strings.Contains(o, "xenbr-gone9") {
		t.Errorf("create -n:\n%s", o)
	}
	// A bad vifspec is the config's error, at its file:line:column.
	bad := e.write("bad.cfg", fmt.Sprintf("name = \"bad\"\nkernel = %q\nvif = [ 'bridge=br0',\n  'rate=10Mb' ]\n", k))
	if _, errs, code := e.run("create", bad); code != 1 || !strings.Contains(errs, "bad.cfg:4:3: vif 1 \"rate=10Mb\": rate") {
		t.Errorf("bad vif: exit %d, stderr %q", code, errs)
	}
	e.assertClean()
}

// tapOn checks that tap exists, is a tun device, is up and is on br.
func tapOn(t *testing.T, tap string, br *hostnet.Link) {
	t.Helper()
	l, err := hostnet.GetLink(tap)
	if err != nil {
		t.Fatalf("tap %s: %v", tap, err)
	}
	if l.Kind != "tun" || l.Master != br.Index || !l.Up {
		t.Errorf("tap %s: %+v, want a tun device up on %s (index %d)", tap, l, br.Name, br.Index)
	}
}

func (e *env) waitNoLink(name string) {
	e.t.Helper()
	e.waitFor(name+" to go", 10*time.Second, func() bool {
		_, err := hostnet.GetLink(name)
		return errors.Is(err, hostnet.ErrNoLink)
	})
}

// The host side of vifs on a micro-guest, which ignores its NICs: xl
// create makes vifDOMID.DEVID on the named bridge, up, and hands the hv
// the taps and the guest its ip=; network-list shows them; destroy, a
// killed hv and a destroy after adoption each leave no tap behind.
func TestVifTaps(t *testing.T) {
	e := kvmEnv(t)
	inNetns(t)
	br := makeBridge(t, "xenbr7")
	k := guest(t, "powerbutton")
	cfg := e.write("n.cfg", fmt.Sprintf("name = \"n\"\nkernel = %q\nmemory = 32\n"+
		"vif = [ 'bridge=xenbr7,ip=10.7.0.2/24,gateway=10.7.0.1,rate=10Mb/s', 'bridge=xenbr7,mac=00:16:3e:00:07:02' ]\n", k))

	e.mustRun("create", cfg)
	id := strings.TrimSpace(e.mustRun("domid", "n"))
	tap0, tap1 := "vif"+id+".0", "vif"+id+".1"
	tapOn(t, tap0, br)
	tapOn(t, tap1, br)
	n, _ := strconv.Atoi(id)
	r := e.record(n)
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.HVPid))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(string(cl), "\x00")
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"--net fd=3,mac=00:16:3e:", ",rate=1250000,burst=62500 --net fd=4,mac=00:16:3e:00:07:02 ",
		"ip=10.7.0.2::10.7.0.1:255.255.255.0::eth0:off",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("hv command line lacks %q:\n%s", want, joined)
		}
	}
	// The hv holds the taps as descriptors 3 and 4.
	for _, fd := range []int{3, 4} {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", r.HVPid, fd)); err != nil || l != "/dev/net/tun" {
			t.Errorf("hv fd %d: %q %v, want /dev/net/tun", fd, l, err)
		}
	}

	o := e.mustRun("network-list", "n")
	lines := strings.Split(strings.TrimSpace(o), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "Idx BE") {
		t.Fatalf("network-list:\n%s", o)
	}
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		tap := "vif" + id + "." + strconv.Itoa(i)
		if len(f) != 10 || f[0] != strconv.Itoa(i) || f[1] != strconv.Itoa(r.HVPid) || f[5] != tap || f[6] != "xenbr7" || f[4] == "no-tap" || f[4] == "off-bridge" || !strings.Contains(f[8], "/") {
			t.Errorf("network-list line %d: %q", i, l)
		}
	}
	if !strings.Contains(lines[2], "00:16:3e:00:07:02") || !strings.Contains(lines[1], "10.7.0.2/24") {
		t.Errorf("network-list:\n%s", o)
	}

	// Adopted: the monitor dies, xl list adopts, the taps stay with the
	// hv; then xl destroy removes them.
	e.killMonitor(n)
	e.mustRun("list")
	tapOn(t, tap0, br)
	e.mustRun("destroy", "n")
	e.waitNoLink(tap0)
	e.waitNoLink(tap1)

	// An hv killed under its monitor takes its taps with it.
	e.mustRun("create", cfg)
	id = strings.TrimSpace(e.mustRun("domid", "n"))
	n, _ = strconv.Atoi(id)
	tapOn(t, "vif"+id+".0", br)
	r = e.record(n)
	if err := syscall.Kill(r.HVPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitNoLink("vif" + id + ".0")
	e.waitNoLink("vif" + id + ".1")
	e.run("destroy", "n")
	e.assertClean()
}

// netLinux boots two minimal images (the xeno kernel and xeno-init) with
// a vif each on one bridge in the lab, whose own address is 10.0.0.1.
const netLinux = xlPrelude + `ip link add xenbr0 type bridge || fail "make the bridge"
ip link set xenbr0 up
ip addr add 10.0.0.1/24 dev xenbr0
mk() {
	cat > /tmp/$1.cfg <<CFG
name = "$1"
kernel = "$G/minimal.vmlinuz"
ramdisk = "$G/minimal.initrd"
memory = 256
vcpus = 1
extra = "console=ttyS0 panic=-1 xeno.run=/bin/sh $GUEST_EXTRA"
vif = [ 'bridge=xenbr0,ip=$2' ]
CFG
}
mk na 10.0.0.2
mk nb 10.0.0.3/24
xl create /tmp/na.cfg || fail "xl create na"
xl create /tmp/nb.cfg || fail "xl create nb"
ida=$(xl domid na); idb=$(xl domid nb)
ip link show vif$ida.0 | grep -q 'master xenbr0' || fail "vif$ida.0 is not on xenbr0"
xl network-list na nb
waitlog na 'xeno-init: eth0 10.0.0.2/24 up' 300
waitlog nb 'xeno-init: eth0 10.0.0.3/24 up' 300
echo "LC: both guests say eth0 is up with their address"
waitlog na 'xeno-init: running' 60
ping -c 3 -W 10 10.0.0.2 || fail "the host cannot ping na"
echo "LC: the host pings na"
ping -c 3 -W 10 10.0.0.3 || fail "the host cannot ping nb"
echo "LC: the host pings nb"
# The console echoes the typed line: the marker is computed, so only the
# command's own output matches.
type_line na 'ping -c 3 -W 10 10.0.0.3 >/dev/null && echo NA-TO-NB-$((40+2))'
waitlog na 'NA-TO-NB-42' 90
echo "LC: na pings nb across the bridge"
xl network-list na
tx=$(xl network-list na | awk 'NR==2 {print $10}')
[ "${tx%%/*}" -gt 0 ] 2>/dev/null || fail "network-list shows no packets sent by na: '$tx'"
echo "LC: network-list counts na's packets: tx $tx"
xl list -l na > /tmp/na.json
grep -q '"vifs"' /tmp/na.json || fail "xl list -l shows no vifs"
timeout 60 xl destroy na || fail "xl destroy na"
timeout 60 xl destroy nb || fail "xl destroy nb"
ip link show vif$ida.0 >/dev/null 2>&1 && fail "vif$ida.0 left after destroy"
ip link show vif$idb.0 >/dev/null 2>&1 && fail "vif$idb.0 left after destroy"
echo "LC: destroy removed both taps"
echo LC-DONE
`

// TestNetXenoLinux is the whole path on Linux guests: xl puts each
// domain's tap on a bridge, xeno-init gives eth0 the address from the
// vif's ip=, the host pings both guests, and one guest pings the other.
// One lab, two boots; no packet leaves the lab machine.
func TestNetXenoLinux(t *testing.T) {
	why := kvmlab.Need(t)
	if why == "" {
		// Straight on this host: the script's bridge must not be.
		inNetns(t)
	}
	runLifecycle(t, why, buildMinimal(t), netLinux)
}
