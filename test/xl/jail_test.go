package xl_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// jailed is xl list -l's view of a domain's jail (docs/xl.md).
type jailed struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	HVPid int    `json:"hv_pid"`
	Jail  *struct {
		Namespaces []string `json:"namespaces"`
		Root       string   `json:"root"`
		RootHolds  []string `json:"root_holds"`
		UID        int      `json:"uid"`
		GID        int      `json:"gid"`
		Cgroup     string   `json:"cgroup"`
		MemoryMax  int64    `json:"memory_max"`
		PidsMax    int      `json:"pids_max"`
		Unjailed   []string `json:"unjailed"`
	} `json:"jail"`
}

func (e *env) jailOf(name string) jailed {
	e.t.Helper()
	var all []jailed
	if err := json.Unmarshal([]byte(e.mustRun("list", "-l", name)), &all); err != nil || len(all) != 1 || all[0].Jail == nil {
		e.t.Fatalf("xl list -l %s: %v, %+v", name, err, all)
	}
	return all[0]
}

// procStatus is the value of key (e.g. "Uid:") in /proc/PID/status.
func procStatus(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// A domain started by plain `xl create` runs jailed, as xl list -l says
// and /proc shows from outside: its own mount, PID, IPC, UTS and network
// namespaces; a root that holds only its directory (sockets, logs); a
// uid and gid of its own, not root; a cgroup v2 group with memory.max and
// pids.max, removed with the domain. Everything xl does with it still
// works: console, pause, the disk lock naming it by its pid as xl sees
// it, destroy. Then a host without cgroup v2: xl refuses, naming the
// layer, and starts the domain with --allow-unjailed=cgroup.
func TestJailed(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "powerbutton")
	disk := filepath.Join(e.dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := e.write("j.cfg", fmt.Sprintf("name = \"jd\"\nkernel = %q\nmemory = 32\ndisk = [%q]\n", k, disk+",raw,xvda,rw"))
	e.mustRun("create", cfg)
	d := e.jailOf("jd")
	j, pid := d.Jail, d.HVPid
	domDir := e.st().DomainDir(d.ID)
	hvDir := filepath.Join(domDir, "hv")

	// Namespaces: all five differ from ours (xl's), as listed.
	if !slices.Equal(j.Namespaces, []string{"mnt", "pid", "ipc", "uts", "net"}) {
		t.Errorf("xl list -l namespaces %q", j.Namespaces)
	}
	for _, ns := range []string{"mnt", "pid", "ipc", "uts", "net"} {
		theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		ours, err2 := os.Readlink("/proc/self/ns/" + ns)
		if err1 != nil || err2 != nil || theirs == ours {
			t.Errorf("namespace %s: hv %q (%v), xl's %q (%v)", ns, theirs, err1, ours, err2)
		}
	}
	// uid and gid: the domain's, not root's, on every id.
	uid := 900000 + d.ID
	if j.UID != uid || j.GID != uid {
		t.Errorf("xl list -l uid %d gid %d, want %d", j.UID, j.GID, uid)
	}
	for _, key := range []string{"Uid:", "Gid:"} {
		if got, want := procStatus(t, pid, key), strings.Repeat(strconv.Itoa(uid)+" ", 4); got+" " != want {
			t.Errorf("/proc/%d/status %s %q, want %q", pid, key, got, want)
		}
	}
	if got := procStatus(t, pid, "Groups:"); got != "" {
		t.Errorf("supplementary groups %q", got)
	}
	// The seccomp layers stand under the new ones.
	if s, n, b := procStatus(t, pid, "Seccomp:"), procStatus(t, pid, "NoNewPrivs:"), procStatus(t, pid, "CapBnd:"); s != "2" || n != "1" || b != "0000000000000000" {
		t.Errorf("Seccomp %q NoNewPrivs %q CapBnd %q", s, n, b)
	}
	// The cgroup: the hv is in it, memory.max is guest RAM + 64 MiB + the
	// kernel (no initramfs), in pages, and pids.max 256 + vCPUs.
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil || j.Cgroup == "" || strings.TrimSpace(string(cg)) != "0::"+strings.TrimPrefix(j.Cgroup, "/sys/fs/cgroup") {
		t.Errorf("/proc/%d/cgroup %q (%v); xl list -l cgroup %q", pid, cg, err, j.Cgroup)
	}
	fi, err := os.Stat(k)
	if err != nil {
		t.Fatal(err)
	}
	wantMax := ((32+64)<<20 + fi.Size() + 4095) / 4096 * 4096
	for file, want := range map[string]string{"memory.max": strconv.FormatInt(wantMax, 10), "pids.max": "257"} {
		if b, err := os.ReadFile(filepath.Join(j.Cgroup, file)); err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s: %q, %v; want %s", file, b, err, want)
		}
	}
	if j.MemoryMax != wantMax || j.PidsMax != 257 {
		t.Errorf("xl list -l memory_max %d pids_max %d, want %d 257", j.MemoryMax, j.PidsMax, wantMax)
	}
	// The private root: exactly the hv's directory and the directories
	// leading to it. No /etc/shadow, no host tree (this package's
	// directory, the kernel, the disk), no /dev/kvm, no /proc.
	if j.Root != filepath.Join(domDir, "jail") || !slices.Equal(j.RootHolds, []string{hvDir}) {
		t.Errorf("xl list -l root %q holds %q", j.Root, j.RootHolds)
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	var tree []string
	err = filepath.Walk(root+"/", func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		tree = append(tree, strings.TrimPrefix(p, root))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for p := hvDir; p != "/"; p = filepath.Dir(p) {
		want = append(want, p)
	}
	want = append(want, "/")
	for _, f := range []string{"control.sock", "console.sock", "vsock.sock", "hv.log", "console.log"} {
		want = append(want, filepath.Join(hvDir, f))
	}
	sort.Strings(want)
	sort.Strings(tree)
	if !slices.Equal(tree, want) {
		t.Errorf("the hv's root holds\n  %s\nwant\n  %s", strings.Join(tree, "\n  "), strings.Join(want, "\n  "))
	}
	cwd, _ := os.Getwd()
	for _, p := range []string{"/etc/shadow", "/etc/passwd", cwd, k, disk, "/dev/kvm", "/proc", "/bin/busybox"} {
		if _, err := os.Stat(root + p); err == nil {
			t.Errorf("the hv's root has %s", p)
		}
	}

	// xl works across the jail: console, pause, unpause.
	e.consoleUntil("jd", "XTF powerbutton waiting", 30*time.Second)
	e.mustRun("pause", "jd")
	e.mustRun("unpause", "jd")

	// The disk lock names the holder by the pid xl sees, not its pid 1.
	cfg2 := e.write("j2.cfg", fmt.Sprintf("name = \"jd2\"\nkernel = %q\nmemory = 32\ndisk = [%q]\n", k, disk+",raw,xvda,rw"))
	_, stderr, code := e.run("create", cfg2)
	if wantMsg := fmt.Sprintf("in use read-write by domain jd (hv pid %d)", pid); code != 1 || !strings.Contains(stderr, wantMsg) {
		t.Errorf("a second domain on the disk: exit %d, %q; want %q", code, stderr, wantMsg)
	}

	e.mustRun("destroy", "jd")
	if _, err := os.Stat(j.Cgroup); !os.IsNotExist(err) {
		t.Errorf("the cgroup outlived its domain: %v", err)
	}
	e.assertClean()

	// A host without cgroup v2 (as this lab is until its init mounts
	// it): refused, naming the layer and the opt-in; then started with
	// the opt-in, without a cgroup and saying why, every other layer on.
	if err := unix.Unmount("/sys/fs/cgroup", 0); err != nil {
		t.Fatalf("unmount cgroup2: %v", err)
	}
	defer func() {
		if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, "nsdelegate"); err != nil {
			t.Errorf("mount cgroup2 again: %v", err)
		}
	}()
	_, stderr, code = e.run("create", cfg)
	if wantMsg := "xl create: toolstack: jail: cgroup: no cgroup v2 file system is mounted (/proc/self/mountinfo); the domain does not start without it (xl create --allow-unjailed=cgroup starts it anyway)"; code != 1 || !strings.Contains(stderr, wantMsg) {
		t.Errorf("create without cgroup v2: exit %d, %q; want %q", code, stderr, wantMsg)
	}
	e.assertClean()
	e.mustRun("create", "--allow-unjailed=cgroup", cfg)
	d = e.jailOf("jd")
	if j := d.Jail; j.Cgroup != "" || len(j.Unjailed) != 1 || !strings.HasPrefix(j.Unjailed[0], "cgroup: no cgroup v2 file system is mounted") ||
		j.UID != 900000+d.ID || len(j.Namespaces) != 5 || j.Root == "" {
		t.Errorf("allowed without a cgroup: %+v", *j)
	}
	if got := procStatus(t, d.HVPid, "Uid:"); !strings.HasPrefix(got, strconv.Itoa(900000+d.ID)+" ") {
		t.Errorf("allowed without a cgroup: Uid %q", got)
	}
	e.mustRun("destroy", "jd")
	e.assertClean()
}
