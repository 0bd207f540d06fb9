package hostnet

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// inNetns runs the calling test again in a network namespace of its own
// (unshare -n), so that nothing it makes touches the host's network, and
// reports whether this process is that run.
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv("HOSTNET_NETNS") == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace, /dev/net/tun and a bridge")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no tun device: %v", err)
	}
	for _, c := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s to set the namespace up: %v", c, err)
		}
	}
	cmd := exec.Command("unshare", "-n", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "HOSTNET_NETNS="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("in a network namespace:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatal("the run in the namespace did not pass")
	}
	return false
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

func TestTapOnBridge(t *testing.T) {
	if !inNetns(t) {
		return
	}
	sh(t, "ip", "link", "add", "brt", "type", "bridge")

	if err := CheckBridge("brt"); err != nil {
		t.Errorf("brt: %v", err)
	}
	if err := CheckBridge("nobr0"); err == nil || !strings.Contains(err.Error(), "bridge nobr0 does not exist") {
		t.Errorf("missing bridge: %v", err)
	}
	if err := CheckBridge("lo"); err == nil || !strings.Contains(err.Error(), "lo is not a bridge") {
		t.Errorf("lo as bridge: %v", err)
	}

	f, err := OpenTap("vif9.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := Plug("vif9.0", "brt"); err != nil {
		t.Fatal(err)
	}
	br, err := GetLink("brt")
	if err != nil {
		t.Fatal(err)
	}
	l, err := GetLink("vif9.0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Kind != "tun" || l.Master != br.Index || !l.Up || LinkName(l.Master) != "brt" {
		t.Errorf("tap after Plug: %+v (bridge index %d)", l, br.Index)
	}
	if l.MAC.String() != HostMAC.String() {
		t.Errorf("host-side address %s, want %s", l.MAC, HostMAC)
	}
	if _, err := OpenTap("vif9.0"); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("a second open of vif9.0: %v", err)
	}
	if _, err := OpenTap("lo"); err == nil {
		t.Error("OpenTap took over lo")
	}

	// The last descriptor gone, the kernel removes the tap.
	f.Close()
	if _, err := GetLink("vif9.0"); !errors.Is(err, ErrNoLink) {
		t.Errorf("vif9.0 after close: %v", err)
	}

	f2, err := OpenTap("vif9.1")
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if err := Plug("vif9.1", "nobr0"); err == nil || !strings.Contains(err.Error(), "nobr0") {
		t.Errorf("plug onto a missing bridge: %v", err)
	}
}

func TestGetLinkMissing(t *testing.T) {
	if _, err := GetLink("no-such-if0"); !errors.Is(err, ErrNoLink) {
		t.Errorf("got %v, want ErrNoLink", err)
	}
	if _, err := GetLink("a-name-too-long-for-linux"); !errors.Is(err, ErrNoLink) {
		t.Errorf("got %v, want ErrNoLink", err)
	}
	l, err := GetLink("lo")
	if err != nil || l.Index != 1 || l.Name != "lo" {
		t.Errorf("lo: %+v, %v", l, err)
	}
}
