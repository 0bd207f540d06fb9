package toolstack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// mountinfo writes a mountinfo file with the given mounts (each
// "MOUNTPOINT FSTYPE SUPEROPTS") for findCgroup2.
func mountinfo(t *testing.T, mounts ...string) string {
	t.Helper()
	var b strings.Builder
	for i, m := range mounts {
		f := strings.Fields(m)
		fmt.Fprintf(&b, "%d 1 0:%d / %s rw,relatime shared:1 - %s %s %s\n", 30+i, 20+i, f[0], f[1], f[1], f[2])
	}
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cgroupDir makes a directory that looks like a cgroup v2 root offering
// controllers.
func cgroupDir(t *testing.T, controllers string) string {
	t.Helper()
	d := t.TempDir()
	for f, v := range map[string]string{"cgroup.controllers": controllers, "cgroup.subtree_control": ""} {
		if err := os.WriteFile(filepath.Join(d, f), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Where the host cannot give a cgroup v2 with memory and pids, the reason
// says what is there instead: this build host's layout (cgroup v1, and
// a bare cgroup2 at /sys/fs/cgroup/unified without those controllers),
// none at all, and a good one.
func TestFindCgroup2(t *testing.T) {
	bare := cgroupDir(t, "hugetlb")
	hybrid := mountinfo(t, "/sys/fs/cgroup tmpfs rw,mode=755", bare+" cgroup2 rw",
		"/sys/fs/cgroup/memory cgroup rw,memory", "/sys/fs/cgroup/pids cgroup rw,pids")
	_, err := findCgroup2(hybrid)
	want := "the cgroup v2 at " + bare + " lacks the memory and pids controller(s) (memory is bound to cgroup v1 at /sys/fs/cgroup/memory, pids is bound to cgroup v1 at /sys/fs/cgroup/pids)"
	if err == nil || err.Error() != want {
		t.Errorf("hybrid host: %v\nwant %s", err, want)
	}
	if _, err := findCgroup2(mountinfo(t, "/sys/fs/cgroup/cpu cgroup rw,cpu")); err == nil || !strings.HasPrefix(err.Error(), "no cgroup v2 file system is mounted") {
		t.Errorf("no cgroup2: %v", err)
	}
	good := cgroupDir(t, "cpuset cpu io memory hugetlb pids")
	if got, err := findCgroup2(mountinfo(t, bare+" cgroup2 rw", good+" cgroup2 rw")); err != nil || got != good {
		t.Errorf("good cgroup2: %q, %v", got, err)
	}
	// The real host's, whatever it is, gives an answer and no panic.
	if p, err := findCgroup2("/proc/self/mountinfo"); err != nil {
		t.Logf("this host: %v", err)
	} else {
		t.Logf("this host: cgroup v2 at %s", p)
	}
}

// makeCgroup writes the limits and enables the controllers down to the
// domain's group; removeCgroup takes it away.
func TestMakeCgroup(t *testing.T) {
	root := cgroupDir(t, "memory pids")
	// The kernel gives each new group its files; a plain directory
	// needs them made.
	if err := os.Mkdir(filepath.Join(root, "xeno"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "xeno", "cgroup.subtree_control"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir, f, err := makeCgroup(root, "u.3", 100<<20, 300)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if dir != filepath.Join(root, "xeno", "u.3") {
		t.Errorf("dir %s", dir)
	}
	for file, want := range map[string]string{
		filepath.Join(root, "cgroup.subtree_control"):         "+memory +pids",
		filepath.Join(root, "xeno", "cgroup.subtree_control"): "+memory +pids",
		filepath.Join(dir, "memory.max"):                      "104857600",
		filepath.Join(dir, "pids.max"):                        "300",
	} {
		if b, err := os.ReadFile(file); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", file, b, err, want)
		}
	}
	// A real cgroup directory holds only kernel files, which rmdir
	// ignores; this one is a plain directory.
	for _, f := range []string{"memory.max", "pids.max"} {
		os.Remove(filepath.Join(dir, f))
	}
	if err := removeCgroup(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after removeCgroup: %v", err)
	}
	if err := removeCgroup(dir); err != nil {
		t.Errorf("removing it twice: %v", err)
	}
}

func TestParseAllowUnjailed(t *testing.T) {
	for in, want := range map[string][]string{
		"":                  nil,
		"cgroup":            {"cgroup"},
		"uid,cgroup,uid":    {"uid", "cgroup"},
		"all":               Layers,
		"namespaces , root": {"namespaces", "root"},
	} {
		if got, err := ParseAllowUnjailed(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	if _, err := ParseAllowUnjailed("cgroup,seccomp"); err == nil || !strings.Contains(err.Error(), `"seccomp" is not a layer (want namespaces, root, uid, cgroup or all)`) {
		t.Errorf("seccomp: %v", err)
	}
}

// A host that cannot give the cgroup refuses the domain, naming the layer
// and the opt-in; with the opt-in the jail goes on without it and says
// why.
func TestPrepareJailCgroupRefusal(t *testing.T) {
	ts := newToolstack(t)
	ts.MountInfo = mountinfo(t, "/sys/fs/cgroup/memory cgroup rw,memory")
	r, err := ts.Reserve(plan("nocg"))
	if err != nil {
		t.Fatal(err)
	}
	// Every other layer allowed off, so that only the cgroup is judged
	// whatever this host (root or not) gives.
	r.AllowUnjailed = []string{LayerNamespaces, LayerRoot, LayerUID}
	_, err = ts.prepareJail(r)
	var le *LayerError
	want := "jail: cgroup: no cgroup v2 file system is mounted (" + ts.MountInfo + ") (memory is bound to cgroup v1 at /sys/fs/cgroup/memory); the domain does not start without it (xl create --allow-unjailed=cgroup starts it anyway)"
	if !errors.As(err, &le) || le.Layer != LayerCgroup || err.Error() != want {
		t.Fatalf("prepareJail without the opt-in: %v\nwant %s", err, want)
	}
	r.AllowUnjailed = append(r.AllowUnjailed, LayerCgroup)
	j, err := ts.prepareJail(r)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if j.info.Cgroup != "" || j.info.MemoryMax != 0 || j.cgroupDir != nil ||
		!slices.ContainsFunc(j.info.Unjailed, func(s string) bool { return strings.HasPrefix(s, "cgroup: no cgroup v2 file system is mounted") }) {
		t.Errorf("with --allow-unjailed=cgroup: %+v", j.info)
	}
}

// The domain's uid and gid are UIDBase+ID, owned the hv's directory; the
// root holds that directory only.
func TestPrepareJailUIDAndRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving the hv a uid needs root")
	}
	ts := newToolstack(t)
	ts.MountInfo = mountinfo(t)
	r, err := ts.Reserve(plan("u"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ts.State.ConsoleLog(r.ID), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r.AllowUnjailed = []string{LayerCgroup}
	j, err := ts.prepareJail(r)
	if err != nil {
		t.Fatal(err)
	}
	uid := UIDBase + r.ID
	if j.info.UID != uid || j.info.GID != uid || j.info.Root != ts.State.JailDir(r.ID) ||
		!slices.Equal(j.info.RootHolds, []string{ts.State.HVDir(r.ID)}) || j.cloneNS != nsFlags {
		t.Errorf("jail %+v", j.info)
	}
	args := strings.Join(j.hvArgs(), " ")
	if want := fmt.Sprintf("--jail-uid %d --jail-gid %d --jail-root %s --jail-dir %s", uid, uid, ts.State.JailDir(r.ID), ts.State.HVDir(r.ID)); args != want {
		t.Errorf("hv flags %q, want %q", args, want)
	}
	for _, p := range []string{ts.State.HVDir(r.ID), ts.State.ConsoleLog(r.ID)} {
		var st = mustStat(t, p)
		if int(st.Uid) != uid || int(st.Gid) != uid {
			t.Errorf("%s: owned by %d:%d, want %d", p, st.Uid, st.Gid, uid)
		}
	}
	// Namespaces refused: without the opt-in for both namespaces and
	// root, refused naming the layer.
	if err := j.dropNamespaces([]string{LayerNamespaces}, errors.New("EPERM")); err == nil || !strings.HasPrefix(err.Error(), "jail: root: a private root needs the mount namespace, which was refused: EPERM") {
		t.Errorf("namespaces dropped without root: %v", err)
	}
	if err := j.dropNamespaces([]string{LayerNamespaces, LayerRoot}, errors.New("EPERM")); err != nil || j.cloneNS != 0 || strings.Contains(strings.Join(j.hvArgs(), " "), "--jail-root") {
		t.Errorf("namespaces dropped: %v, %+v", err, j)
	}
}

func mustStat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// An hv killed by its cgroup's OOM killer is told from any other kill.
func TestOOMKilled(t *testing.T) {
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "memory.max"), []byte("104857600\n"), 0o600)
	os.WriteFile(filepath.Join(d, "memory.events"), []byte("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n"), 0o600)
	if got, want := oomKilled(d), " (by the OOM killer of its cgroup "+d+": memory.max 104857600)"; got != want {
		t.Errorf("oomKilled %q, want %q", got, want)
	}
	os.WriteFile(filepath.Join(d, "memory.events"), []byte("oom 0\noom_kill 0\n"), 0o600)
	if got := oomKilled(d); got != "" || oomKilled("") != "" {
		t.Errorf("no OOM kill: %q", got)
	}
}

// The check from outside fails a live hv that is not jailed as recorded,
// naming the layer, and leaves alone one that has already ended (a quick
// guest powers off between its hv's first answer and the check).
func TestCheckJail(t *testing.T) {
	ts := newToolstack(t)
	self := os.Getpid()
	j := &Jail{UID: os.Getuid() + 1, GID: os.Getgid()}
	var le *LayerError
	if err := ts.checkJail(1, self, procStart(self), j, nil); !errors.As(err, &le) || le.Layer != LayerUID {
		t.Errorf("live process with another uid: %v", err)
	}
	j = &Jail{UID: os.Getuid(), GID: os.Getgid(), Root: "/somewhere"}
	if err := ts.checkJail(1, self, procStart(self), j, nil); !errors.As(err, &le) || le.Layer != LayerRoot {
		t.Errorf("live process with the host's root: %v", err)
	}
	if err := ts.checkJail(1, deadPid(t), 1, j, nil); err != nil {
		t.Errorf("an hv that has ended: %v", err)
	}
}
