package toolstack

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The hv's jail as xl sets it up (docs/security.md): by default each hv
// starts in new mount, PID, IPC, UTS and network namespaces, in a cgroup
// v2 group of its own with memory.max and pids.max, and its jailer step
// (hv --jail-*) then opens its files, enters a private root and drops to
// the domain's uid and gid. A layer the host cannot give refuses the
// create, naming the layer and why, unless the operator allowed that
// layer off (xl create --allow-unjailed=LAYER,...).

// Jail layers, as --allow-unjailed names them.
const (
	LayerNamespaces = "namespaces"
	LayerRoot       = "root"
	LayerUID        = "uid"
	LayerCgroup     = "cgroup"
)

// Layers are the jail's layers, in the order xl sets them up.
var Layers = []string{LayerNamespaces, LayerRoot, LayerUID, LayerCgroup}

// ParseAllowUnjailed parses --allow-unjailed's LAYER,... ("all": every
// layer).
func ParseAllowUnjailed(s string) ([]string, error) {
	var out []string
	for _, l := range strings.Split(s, ",") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case l == "all":
			return slices.Clone(Layers), nil
		case slices.Contains(Layers, l):
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		default:
			return nil, fmt.Errorf("--allow-unjailed: %q is not a layer (want %s or all)", l, strings.Join(Layers, ", "))
		}
	}
	return out, nil
}

// UIDBase is where the domains' uids and gids start: domain ID n's hv
// runs as uid and gid UIDBase+n. IDs are never reused while the state
// directory lives, so no two domains share one. The range must be free
// on the host: xl refuses a uid or gid that /etc/passwd or /etc/group
// names.
const UIDBase = 900000

// Memory the hv needs beyond guest RAM (memory.max): its Go runtime and
// device buffers, KVM's page tables and vCPU state charged to it, and
// the kernel and initramfs it holds while it loads them: the kernel's
// size and four times the initramfs file (a decompressed copy is the
// usual gzip or zstd ratio of a cpio).
const (
	jailOverheadMiB  = 64
	jailInitrdFactor = 4
	// jailPids bounds the hv's threads (pids.max counts threads): the Go
	// runtime's (some per host CPU, more while blocked in syscalls)
	// plus one per vCPU. The seccomp filter forbids any new process.
	jailPids = 256
)

// Jail is what a domain's hv runs under, as xl list -l shows it.
type Jail struct {
	// Namespaces are the hv's namespaces that differ from xl's, read
	// from /proc/PID/ns when it started: mnt, pid, ipc, uts, net.
	Namespaces []string `json:"namespaces"`
	// Root is the host directory the hv's private root is mounted on
	// (in its mount namespace only), "" without one; RootHolds is what
	// that root holds, each at its host path.
	Root      string   `json:"root,omitempty"`
	RootHolds []string `json:"root_holds,omitempty"`
	// UID and GID are the hv's after its jailer dropped root.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Cgroup is the hv's cgroup v2 directory, with its limits.
	Cgroup    string `json:"cgroup,omitempty"`
	MemoryMax int64  `json:"memory_max,omitempty"`
	PidsMax   int    `json:"pids_max,omitempty"`
	// Unjailed are the layers the host could not give and the operator
	// allowed off, each "LAYER: why".
	Unjailed []string `json:"unjailed,omitempty"`
}

// LayerError says a layer of the jail could not be set up.
type LayerError struct {
	Layer string
	Err   error
}

func (e *LayerError) Error() string {
	return fmt.Sprintf("jail: %s: %v; the domain does not start without it (xl create --allow-unjailed=%s starts it anyway)", e.Layer, e.Err, e.Layer)
}

func (e *LayerError) Unwrap() error { return e.Err }

// jailRun is one hv start's jail: the flags and clone attributes, and
// what the record shows.
type jailRun struct {
	info      Jail
	args      []string // the uid's
	rootArgs  []string // the private root's, which needs cloneNS
	cloneNS   uintptr
	cgroupDir *os.File
}

// nsFlags are the namespaces the hv starts in.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNET

// nsNames are /proc/PID/ns's names of nsFlags.
var nsNames = []string{"mnt", "pid", "ipc", "uts", "net"}

// prepareJail sets up what xl gives domain r's next hv: its directory
// owned by the domain's uid, its cgroup. allow is what the operator
// allowed off. A layer that fails and is not allowed off is a
// *LayerError.
func (t *Toolstack) prepareJail(r *Record) (*jailRun, error) {
	allowed := func(l string) bool { return slices.Contains(r.AllowUnjailed, l) }
	j := &jailRun{cloneNS: nsFlags}
	j.info.UID, j.info.GID = os.Geteuid(), os.Getegid()
	off := func(layer string, err error) error {
		if !allowed(layer) {
			return &LayerError{Layer: layer, Err: err}
		}
		j.info.Unjailed = append(j.info.Unjailed, layer+": "+err.Error())
		return nil
	}
	hvDir := t.State.HVDir(r.ID)
	uid := UIDBase + r.ID
	if err := uidFree(uid); err != nil {
		if err := off(LayerUID, err); err != nil {
			return nil, err
		}
	} else if os.Geteuid() != 0 {
		if err := off(LayerUID, fmt.Errorf("xl runs as uid %d, not root: it cannot give the hv a uid of its own", os.Geteuid())); err != nil {
			return nil, err
		}
	} else {
		// The hv's directory (sockets, logs, exit file) is the uid's,
		// and so is what an earlier hv of the domain left there (a
		// restart's uid is new). Nothing is followed: lchown.
		if err := chownTree(hvDir, uid, uid); err != nil {
			return nil, &LayerError{Layer: LayerUID, Err: err}
		}
		j.info.UID, j.info.GID = uid, uid
		j.args = append(j.args, "--jail-uid", strconv.Itoa(uid), "--jail-gid", strconv.Itoa(uid))
	}
	if os.Geteuid() != 0 {
		// Unprivileged: no namespaces, hence no root (it needs the
		// mount namespace).
		if err := off(LayerNamespaces, errors.New("xl is not root: new mount, PID, IPC, UTS and network namespaces need CAP_SYS_ADMIN")); err != nil {
			return nil, err
		}
		j.cloneNS = 0
	}
	if j.cloneNS == 0 {
		if err := off(LayerRoot, errors.New("a private root needs the hv's own mount namespace, which it does not have")); err != nil {
			return nil, err
		}
	} else {
		root := t.State.JailDir(r.ID)
		if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, &LayerError{Layer: LayerRoot, Err: err}
		}
		j.info.Root, j.info.RootHolds = root, []string{hvDir}
		j.rootArgs = []string{"--jail-root", root, "--jail-dir", hvDir}
		if allowed(LayerRoot) {
			j.rootArgs = append(j.rootArgs, "--jail-root-optional")
		}
	}
	mountinfo := t.MountInfo
	if mountinfo == "" {
		mountinfo = "/proc/self/mountinfo"
	}
	cg, err := findCgroup2(mountinfo)
	if err == nil {
		name := r.UUID + "." + strconv.Itoa(r.ID)
		j.info.MemoryMax, j.info.PidsMax = jailMemoryMax(r.Config), jailPids+r.Config.VCPUs
		j.info.Cgroup, j.cgroupDir, err = makeCgroup(cg, name, j.info.MemoryMax, j.info.PidsMax)
	}
	if err != nil {
		j.info.MemoryMax, j.info.PidsMax, j.info.Cgroup = 0, 0, ""
		if err := off(LayerCgroup, err); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// jailMemoryMax is memory.max for a domain of c (see jailOverheadMiB).
func jailMemoryMax(c *Config) int64 {
	n := (c.MemoryMiB + jailOverheadMiB) << 20
	if fi, err := os.Stat(c.Kernel); err == nil {
		n += fi.Size()
	}
	if c.Ramdisk != "" {
		if fi, err := os.Stat(c.Ramdisk); err == nil {
			n += jailInitrdFactor * fi.Size()
		}
	}
	// Whole pages, as the kernel keeps it: memory.max reads back as
	// the record says.
	const page = 4096
	return (n + page - 1) / page * page
}

// sysProcAttr is how the hv is cloned: its own session, the namespaces,
// straight into its cgroup (CLONE_INTO_CGROUP: it allocates nothing
// outside it).
func (j *jailRun) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setsid: true, Cloneflags: j.cloneNS}
	if j.cgroupDir != nil {
		a.UseCgroupFD, a.CgroupFD = true, int(j.cgroupDir.Fd())
	}
	return a
}

// hvArgs are the jailer's flags for the hv.
func (j *jailRun) hvArgs() []string {
	if j.cloneNS == 0 {
		return j.args
	}
	return append(slices.Clone(j.args), j.rootArgs...)
}

// dropNamespaces is the fallback where the kernel refused the namespaces
// (why) and the operator allowed them off: the root goes with them.
func (j *jailRun) dropNamespaces(allow []string, why error) error {
	if !slices.Contains(allow, LayerNamespaces) {
		return &LayerError{Layer: LayerNamespaces, Err: why}
	}
	if !slices.Contains(allow, LayerRoot) {
		return &LayerError{Layer: LayerRoot, Err: fmt.Errorf("a private root needs the mount namespace, which was refused: %v", why)}
	}
	j.cloneNS = 0
	j.info.Root, j.info.RootHolds = "", nil
	j.info.Unjailed = append(j.info.Unjailed, LayerNamespaces+": "+why.Error(), LayerRoot+": it needs the mount namespace")
	return nil
}

// probeNamespaces starts `hv --version` in the hv's namespaces: where
// starting the hv failed, it tells whether the namespaces were refused.
func probeNamespaces(hv string) error {
	cmd := exec.Command(hv, "--version")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: nsFlags}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the kernel refused new %s namespaces: %w", strings.Join(nsNames, ", "), err)
	}
	return nil
}

func (j *jailRun) close() {
	if j.cgroupDir != nil {
		j.cgroupDir.Close()
	}
}

// uidFree refuses a uid or gid that the host's /etc/passwd or /etc/group
// gives to someone.
func uidFree(id int) error {
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Split(line, ":")
			if len(fields) > 2 && fields[2] == strconv.Itoa(id) {
				return fmt.Errorf("%d is %q in %s; the range from %d must be free for xeno's domains", id, fields[0], f, UIDBase)
			}
		}
	}
	return nil
}

// chownTree gives dir and its entries (one level: the hv makes no
// subdirectories) to uid and gid, following no symlink.
func chownTree(dir string, uid, gid int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Lchown(filepath.Join(dir, e.Name()), uid, gid); err != nil {
			return err
		}
	}
	return os.Lchown(dir, uid, gid)
}

// observeNamespaces lists which of pid's namespaces differ from ours.
func observeNamespaces(pid int) []string {
	out := []string{}
	for _, n := range nsNames {
		a, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, n))
		b, err2 := os.Readlink("/proc/self/ns/" + n)
		if err1 == nil && err2 == nil && a != b {
			out = append(out, n)
		}
	}
	return out
}

// verifyJail checks from outside that the live hv pid runs as j says,
// before its guest's first instruction matters: a layer that should hold
// and does not is a *LayerError.
func verifyJail(pid int, j *Jail) error {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	uid, gid := statusID(string(status), "Uid:"), statusID(string(status), "Gid:")
	if uid != j.UID || gid != j.GID {
		return &LayerError{Layer: LayerUID, Err: fmt.Errorf("the hv runs as uid %d gid %d, not %d %d", uid, gid, j.UID, j.GID)}
	}
	if j.Cgroup != "" {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil || !strings.HasSuffix(strings.TrimSpace(string(b)), "/"+filepath.Base(j.Cgroup)) {
			return &LayerError{Layer: LayerCgroup, Err: fmt.Errorf("the hv is not in %s: /proc/%d/cgroup says %q", j.Cgroup, pid, strings.TrimSpace(string(b)))}
		}
	}
	return nil
}

// statusID is the real id from a /proc/PID/status "Uid:" or "Gid:" line,
// -1 if absent.
func statusID(status, key string) int {
	for _, l := range strings.Split(status, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == key {
			n, err := strconv.Atoi(f[1])
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// rootPrivate reports whether pid's root is another directory than ours.
func rootPrivate(pid int) bool {
	var a, b unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/root/", pid), &a) != nil || unix.Stat("/", &b) != nil {
		return false
	}
	return a.Dev != b.Dev || a.Ino != b.Ino
}

// findCgroup2 finds the cgroup v2 hierarchy from mountinfo: the cgroup2
// mount, which must offer the memory and pids controllers. On a host
// with cgroup v1 (or a hybrid one, whose cgroup2 has no controllers) it
// says where they are instead.
func findCgroup2(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var v2 []string
	v1 := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS"
		left, right, ok := strings.Cut(sc.Text(), " - ")
		lf, rf := strings.Fields(left), strings.Fields(right)
		if !ok || len(lf) < 5 || len(rf) < 3 {
			continue
		}
		switch rf[0] {
		case "cgroup2":
			v2 = append(v2, unescapeMount(lf[4]))
		case "cgroup":
			for _, o := range strings.Split(rf[2], ",") {
				if o == "memory" || o == "pids" {
					v1[o] = unescapeMount(lf[4])
				}
			}
		}
	}
	if len(v2) == 0 {
		return "", fmt.Errorf("no cgroup v2 file system is mounted (%s)%s", mountinfo, v1Note(v1))
	}
	var why []string
	for _, m := range v2 {
		missing, err := missingControllers(m)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		if len(missing) == 0 {
			return m, nil
		}
		why = append(why, fmt.Sprintf("the cgroup v2 at %s lacks the %s controller(s)", m, strings.Join(missing, " and ")))
	}
	return "", fmt.Errorf("%s%s", strings.Join(why, "; "), v1Note(v1))
}

func v1Note(v1 map[string]string) string {
	var s []string
	for _, c := range []string{"memory", "pids"} {
		if m, ok := v1[c]; ok {
			s = append(s, fmt.Sprintf("%s is bound to cgroup v1 at %s", c, m))
		}
	}
	if len(s) == 0 {
		return ""
	}
	return " (" + strings.Join(s, ", ") + ")"
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// missingControllers is which of memory and pids cgroup v2 at root does
// not offer.
func missingControllers(root string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	have := strings.Fields(string(b))
	var missing []string
	for _, c := range []string{"memory", "pids"} {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	return missing, nil
}

// makeCgroup makes ROOT/xeno/NAME with memory.max and pids.max, enabling
// the two controllers down to it, and opens it for CLONE_INTO_CGROUP.
func makeCgroup(root, name string, memMax int64, pidsMax int) (string, *os.File, error) {
	parent := filepath.Join(root, "xeno")
	if err := enableControllers(root); err != nil {
		return "", nil, err
	}
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", nil, err
	}
	if err := enableControllers(parent); err != nil {
		return "", nil, err
	}
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, err
	}
	fail := func(err error) (string, *os.File, error) {
		_ = removeCgroup(dir)
		return "", nil, err
	}
	for file, v := range map[string]string{"memory.max": strconv.FormatInt(memMax, 10), "pids.max": strconv.Itoa(pidsMax)} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			return fail(err)
		}
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	return dir, f, nil
}

// enableControllers makes memory and pids available to dir's children.
func enableControllers(dir string) error {
	p := filepath.Join(dir, "cgroup.subtree_control")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	have := strings.Fields(string(b))
	if slices.Contains(have, "memory") && slices.Contains(have, "pids") {
		return nil
	}
	if err := os.WriteFile(p, []byte("+memory +pids"), 0); err != nil {
		return fmt.Errorf("enable memory and pids in %s: %w", p, err)
	}
	return nil
}

// removeCgroup removes a domain's cgroup once its hv has ended; the
// kernel may still be taking the last task out of it for a moment.
func removeCgroup(dir string) error {
	if dir == "" {
		return nil
	}
	var err error
	for try := 0; try < 50; try++ {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("toolstack: remove cgroup %s: %w", dir, err)
}

// checkJail is verifyJail for domain id's new hv pid, and notes in its
// record a private root the hv's jailer could not build where the
// operator allowed that (the jailer carries on and says why in hv.log).
func (t *Toolstack) checkJail(id, pid int, start uint64, j *Jail, allow []string) error {
	err := verifyJail(pid, j)
	private := j.Root == "" || rootPrivate(pid)
	// A quick guest's hv may have ended between its answer and these
	// reads (its /proc then says nothing, or a zombie's): its exit
	// decides, there is no jail left to check.
	if start == 0 || procStart(pid) != start {
		return nil
	}
	if err != nil {
		return err
	}
	if private {
		return nil
	}
	if !slices.Contains(allow, LayerRoot) {
		return &LayerError{Layer: LayerRoot, Err: fmt.Errorf("the hv's root is still the host's (see %s)", t.State.HVLog(id))}
	}
	j.Unjailed = append(j.Unjailed, LayerRoot+": the hv's jailer could not build it; see "+t.State.HVLog(id))
	j.Root, j.RootHolds = "", nil
	_, err = t.update(id, func(r *Record) error { r.Jail = j; return nil })
	return err
}

// endJail removes what xl set up for r's hv, which has ended: its cgroup.
// A failure is reported and not fatal: the domain's end goes on.
func (t *Toolstack) endJail(r *Record) {
	if r.Jail == nil || r.HVAlive() {
		return
	}
	if err := removeCgroup(r.Jail.Cgroup); err != nil {
		fmt.Fprintf(os.Stderr, "xl: domain %s (ID %d): %v\n", r.Name, r.ID, err)
	}
}

// oomKilled says, for an hv killed by a signal, whether its cgroup's OOM
// killer did it: its memory.events count oom_kill.
func oomKilled(cgroup string) string {
	if cgroup == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(cgroup, "memory.events"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
			max, _ := os.ReadFile(filepath.Join(cgroup, "memory.max"))
			return fmt.Sprintf(" (by the OOM killer of its cgroup %s: memory.max %s)", cgroup, strings.TrimSpace(string(max)))
		}
	}
	return ""
}
