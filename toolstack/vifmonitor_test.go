package toolstack

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/toolstack/hostnet"
)

// fakeHVMain is this test binary as the monitor's hv (XENO_TEST_FAKE_HV):
// it writes what it was given, its arguments and for each --net fd=N the
// name of the tap on descriptor N (TUNGETIFF), to net.txt beside the
// control socket, then answers status until it is told to destroy.
func fakeHVMain(args []string) int {
	var sock string
	var lines []string
	uid, gid := -1, -1
	for i, a := range args {
		switch a {
		case "--jail-uid":
			uid, _ = strconv.Atoi(args[i+1])
		case "--jail-gid":
			gid, _ = strconv.Atoi(args[i+1])
		case "--control":
			sock = args[i+1]
		case "--net":
			v := args[i+1]
			fd, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(v, ",")[0], "fd="))
			ifr, _ := unix.NewIfreq("")
			name := "not-a-tap"
			if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err == nil {
				name = ifr.Name()
			}
			lines = append(lines, v+" "+name)
		}
	}
	// The jailer's last step, which xl checks from outside; the fake
	// builds no private root (the root layer is allowed off).
	if gid >= 0 && syscall.Setgid(gid) != nil || uid >= 0 && syscall.Setuid(uid) != nil {
		fmt.Fprintln(os.Stderr, "fake hv: cannot drop to", uid, gid)
		return 1
	}
	lines = append(lines, "args "+strings.Join(args, " "))
	if err := os.WriteFile(filepath.Join(filepath.Dir(sock), "net.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "fake hv:", err)
		return 1
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake hv:", err)
		return 1
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		var req control.Request
		if line, err := bufio.NewReader(c).ReadBytes('\n'); err == nil && json.Unmarshal(line, &req) == nil {
			resp := control.Response{OK: true, Status: &control.Status{State: control.StateRunning}}
			_ = json.NewEncoder(c).Encode(resp)
			reason := map[string]string{control.CmdDestroy: control.ReasonDestroyed, control.CmdReboot: control.ReasonReboot}[req.Cmd]
			if reason != "" {
				b, _ := json.Marshal(control.Exit{Reason: reason, Code: control.ExitCode(reason), Time: time.Now()})
				_ = os.WriteFile(control.ExitFile(sock), b, 0o600)
				return control.ExitCode(reason)
			}
		}
		c.Close()
	}
}

// The monitor's side of vifs, with a fake hv and no KVM, in a network
// namespace of its own: the taps exist on their bridge before the hv
// starts, the hv gets them as descriptors 3 and 4 in vif order with
// matching --net flags, the monitor keeps no copy, a reboot's restart has
// new taps for its new ID, and when the hv ends the taps are gone. A
// missing bridge fails the start and leaves nothing.
func TestMonitorVifs(t *testing.T) {
	if os.Getenv("TOOLSTACK_NETNS") != t.Name() {
		if os.Geteuid() != 0 {
			t.Skip("needs root: a network namespace, /dev/net/tun and a bridge")
		}
		for _, c := range []string{"unshare", "ip"} {
			if _, err := exec.LookPath(c); err != nil {
				t.Skipf("needs %s: %v", c, err)
			}
		}
		cmd := exec.Command("unshare", "-n", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "TOOLSTACK_NETNS="+t.Name())
		out, err := cmd.CombinedOutput()
		t.Logf("in a network namespace:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
			t.Fatalf("the run in the namespace failed: %v", err)
		}
		return
	}
	if out, err := exec.Command("ip", "link", "add", "brm", "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v\n%s", err, out)
	}
	br, err := hostnet.GetLink("brm")
	if err != nil {
		t.Fatal(err)
	}
	ts := newToolstack(t)
	ts.HV = os.Args[0]
	t.Setenv("XENO_TEST_FAKE_HV", "1")

	p := plan("v")
	p.Config.Kernel = "/k"
	p.Config.Vifs = []Vif{
		{MAC: "00:16:3e:00:00:0a", Bridge: "brm", IP: "10.0.0.2/24", Rate: &Rate{BytesPerSec: 1000, Burst: 50}},
		{MAC: "00:16:3e:00:00:0b", Bridge: "brm"},
	}
	// The fake hv builds no private root, and this host may lack a
	// cgroup v2 with the controllers it needs.
	p.AllowUnjailed = []string{LayerRoot, LayerCgroup}
	r, err := ts.Reserve(p)
	if err != nil {
		t.Fatal(err)
	}
	// Without its private root the fake, once the domain's uid, reaches
	// its directory through the test's temporary ones (0700, root's).
	for d := ts.State.DomainDir(r.ID); len(d) > len(os.TempDir()); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	up := make(chan error, 1)
	done := make(chan error, 1)
	go func() { done <- ts.Monitor(r.ID, CreateOptions{}, func(err error) { up <- err }) }()
	if err := <-up; err != nil {
		t.Fatal(err)
	}
	for _, tap := range []string{"vif1.0", "vif1.1"} {
		l, err := hostnet.GetLink(tap)
		if err != nil || l.Master != br.Index || !l.Up || l.Kind != "tun" {
			t.Errorf("%s: %+v %v", tap, l, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(ts.State.HVDir(r.ID), "net.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"fd=3,mac=00:16:3e:00:00:0a,rate=1000,burst=50 vif1.0\n",
		"fd=4,mac=00:16:3e:00:00:0b vif1.1\n",
		"ip=10.0.0.2:::255.255.255.0::eth0:off",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the hv's view lacks %q:\n%s", want, got)
		}
	}
	// The monitor (this process) holds no descriptor of /dev/net/tun.
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); l == "/dev/net/tun" {
			t.Errorf("the monitor keeps tap descriptor %s", fd.Name())
		}
	}
	// A reboot restarts the domain under a new ID, so new taps, and the
	// old ones go with the old hv.
	if _, err := control.Call(r.Control, control.CmdReboot, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err0 := hostnet.GetLink("vif2.0")
		_, err1 := hostnet.GetLink("vif2.1")
		_, old := hostnet.GetLink("vif1.0")
		if err0 == nil && err1 == nil && errors.Is(old, hostnet.ErrNoLink) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after reboot: vif2.0 %v, vif2.1 %v, vif1.0 %v", err0, err1, old)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := ts.Destroy("v"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("monitor: %v", err)
	}
	for _, tap := range []string{"vif1.0", "vif1.1", "vif2.0", "vif2.1"} {
		if _, err := hostnet.GetLink(tap); !errors.Is(err, hostnet.ErrNoLink) {
			t.Errorf("%s after destroy: %v", tap, err)
		}
	}

	// A bridge gone between the check and the start.
	p = plan("nobr")
	p.Config.Kernel = "/k"
	p.Config.Vifs = []Vif{{MAC: "00:16:3e:00:00:0c", Bridge: "brm"}, {MAC: "00:16:3e:00:00:0d", Bridge: "gone0"}}
	p.AllowUnjailed = []string{LayerRoot, LayerCgroup}
	if r, err = ts.Reserve(p); err != nil {
		t.Fatal(err)
	}
	err = ts.Monitor(r.ID, CreateOptions{}, func(error) {})
	if err == nil || !strings.Contains(err.Error(), "vif 1 (vif3.1)") || !strings.Contains(err.Error(), "bridge gone0 does not exist") {
		t.Errorf("start on a missing bridge: %v", err)
	}
	if _, err := hostnet.GetLink("vif3.0"); !errors.Is(err, hostnet.ErrNoLink) {
		t.Errorf("vif3.0 left after the failed start: %v", err)
	}
	if _, err := ts.State.Load(r.ID); err == nil {
		t.Error("the record of the failed start is still there")
	}
}
