package jail

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// rootChild makes this test binary the jailer's child: it enters the
// root and uid its value describes ("ROOT BIND UID"), then reports what
// it can see, one "key: value" line each.
const rootChild = "XENO_JAIL_TEST_ROOT_CHILD"

func enterChild(spec string) int {
	var root, bind string
	var uid int
	if _, err := fmt.Sscan(spec, &root, &bind, &uid); err != nil {
		fmt.Println("spec:", err)
		return 3
	}
	// A file open before the jail stays usable after it, as the hv's
	// kernel, disks and /dev/kvm are.
	pre, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Println("open:", err)
		return 3
	}
	if err := Enter(Root{Dir: root, Binds: []string{bind}}, uid, uid); err != nil {
		fmt.Println("enter:", err)
		return 3
	}
	var all []string
	_ = filepath.Walk("/", func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			all = append(all, p)
		}
		return nil
	})
	sort.Strings(all)
	fmt.Println("tree:", strings.Join(all, " "))
	for _, p := range []string{"/etc/shadow", "/proc/self/status", "/proc", os.Args[0]} {
		_, err := os.Stat(p)
		fmt.Printf("stat %s: %v\n", p, err != nil)
	}
	fmt.Println("write bind:", os.WriteFile(filepath.Join(bind, "hv.log"), []byte("x"), 0o600))
	fmt.Println("write root:", os.WriteFile("/x", nil, 0o600) != nil)
	b := make([]byte, 4096)
	n, _ := pre.ReadAt(b, 0)
	for _, l := range strings.Split(string(b[:n]), "\n") {
		if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "CapBnd:") || strings.HasPrefix(l, "CapEff:") {
			fmt.Println(strings.Join(strings.Fields(l), " "))
		}
	}
	return 0
}

// needRootNS skips unless this process may create namespaces and mount.
func needRootNS(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the jailer needs root (to mount and change uid); running as uid", os.Geteuid())
	}
}

// runJailer runs the child in new mount, PID, IPC, UTS and network
// namespaces, as xl starts the hv.
func runJailer(t *testing.T, root, bind string, uid int, ns bool) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", rootChild, root, bind, uid))
	if ns {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNET}
	}
	out, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(string(out), "enter:") {
		t.Fatalf("jailer child: %v\n%s", err, out)
	}
	return string(out)
}

// The jailed process sees only the bound directory (and the directories
// leading to it), writes only there, cannot see /etc/shadow, /proc or
// its own binary, runs as the uid with empty capability sets, and still
// uses a file it opened before.
func TestEnterPrivateRoot(t *testing.T) {
	needRootNS(t)
	dir := t.TempDir()
	root, bind := filepath.Join(dir, "jail"), filepath.Join(dir, "hv")
	for _, d := range []string{root, bind} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const uid = 900123
	if err := os.Chown(bind, uid, uid); err != nil {
		t.Fatal(err)
	}
	out := runJailer(t, root, bind, uid, true)
	if strings.Contains(out, "enter:") && strings.Contains(out, "operation not permitted") {
		t.Skipf("this host refuses namespaces or mounts: %s", out)
	}
	var want []string
	for p := bind; p != "/"; p = filepath.Dir(p) {
		want = append(want, p)
	}
	want = append(want, "/")
	sort.Strings(want)
	for _, line := range []string{
		"tree: " + strings.Join(want, " "),
		"stat /etc/shadow: true", "stat /proc/self/status: true", "stat /proc: true",
		"stat " + os.Args[0] + ": true",
		"write bind: <nil>", "write root: true",
		fmt.Sprintf("Uid: %d %d %d %d", uid, uid, uid, uid),
		"CapEff: 0000000000000000", "CapBnd: 0000000000000000",
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("jailed child: no line %q in:\n%s", line, out)
		}
	}
	// The host saw none of the jail's mounts, and the log is the host's.
	if b, err := os.ReadFile(filepath.Join(bind, "hv.log")); err != nil || string(b) != "x" {
		t.Errorf("the file written in the jail, from the host: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("the jail's mount point on the host is not empty: %v", ents)
	}
}

// In the host's mount namespace the jailer refuses to mount anything,
// and says which layer failed.
func TestEnterRefusesHostMountNS(t *testing.T) {
	needRootNS(t)
	dir := t.TempDir()
	out := runJailer(t, dir, dir, 900123, false)
	if !strings.Contains(out, "enter: jail: root: the hv is in the host's mount namespace") {
		t.Errorf("jailer in the host's mount namespace: %s", out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("something was made in %s: %v", dir, ents)
	}
}

// The uid layer refuses root's uid.
func TestDropRefusesRoot(t *testing.T) {
	if err := Enter(Root{}, 0, 0); err == nil || !strings.Contains(err.Error(), "jail: uid: uid 0, gid 0") {
		t.Errorf("Enter with uid 0: %v", err)
	}
}
