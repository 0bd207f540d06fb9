// Go 1.25 re-reads the CPU limit from cgroup files every second; under
// the seccomp filter (docs/security.md) those opens are not the hv's to
// make, and a domain's GOMAXPROCS need not follow later changes.
//
//go:debug updatemaxprocs=0

// Command hv runs one xeno domain: see docs/hv.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/jail"
	"github.com/xeno-hv/xeno/hv/logfile"
	"github.com/xeno-hv/xeno/hv/snapshot"
	"github.com/xeno-hv/xeno/hv/virtio"
	"github.com/xeno-hv/xeno/hv/vm"
	"github.com/xeno-hv/xeno/internal/hostfile"
	"github.com/xeno-hv/xeno/kernels/kformat"
)

type diskFlags []vm.Disk

func (d *diskFlags) String() string { return fmt.Sprint(*d) }
func (d *diskFlags) Set(s string) error {
	path, opt, _ := strings.Cut(s, ",")
	if path == "" {
		return errors.New("empty disk path")
	}
	switch opt {
	case "", "rw":
		*d = append(*d, vm.Disk{Path: path})
	case "ro":
		*d = append(*d, vm.Disk{Path: path, ReadOnly: true})
	default:
		return fmt.Errorf("disk %q: option %q is not ro or rw", s, opt)
	}
	return nil
}

// parseVsock parses --vsock cid=N,uds=PATH.
func parseVsock(s string) (*vm.Vsock, error) {
	var v vm.Vsock
	var haveCID bool
	for _, kv := range strings.Split(s, ",") {
		k, val, _ := strings.Cut(kv, "=")
		switch k {
		case "cid":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil || n < 3 || n > 0xfffffffe {
				return nil, fmt.Errorf("--vsock: cid %q: want 3 to 4294967294 (0-2 are reserved, -1 is VMADDR_CID_ANY)", val)
			}
			v.CID, haveCID = n, true
		case "uds":
			v.UDS = val
		default:
			return nil, fmt.Errorf("--vsock: unknown key %q: want cid=N,uds=PATH", k)
		}
	}
	if !haveCID || v.UDS == "" {
		return nil, errors.New("--vsock: want cid=N,uds=PATH")
	}
	if len(v.UDS) > virtio.MaxUDSPath {
		return nil, fmt.Errorf("--vsock: uds %q is %d bytes, at most %d (a Unix socket path, with _PORT added)", v.UDS, len(v.UDS), virtio.MaxUDSPath)
	}
	return &v, nil
}

type netFlags []vm.Net

func (n *netFlags) String() string { return fmt.Sprint(*n) }
func (n *netFlags) Set(s string) error {
	c, err := parseNet(s)
	if err != nil {
		return fmt.Errorf("net %q: %w", s, err)
	}
	*n = append(*n, c)
	return nil
}

// parseNet reads one --net value (docs/hv.md):
// fd=FD|tap=IFNAME[,mac=MAC][,rate=BYTES_PER_S][,burst=BYTES][,pps=PACKETS_PER_S].
func parseNet(s string) (vm.Net, error) {
	c := vm.Net{FD: -1}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || val == "" {
			return vm.Net{}, fmt.Errorf("%q is not KEY=VALUE", kv)
		}
		if seen[k] {
			return vm.Net{}, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		var err error
		switch k {
		case "fd":
			var fd uint64
			fd, err = strconv.ParseUint(val, 10, 31)
			c.FD = int(fd)
			if err == nil && fd <= 2 {
				err = errors.New("is stdin, stdout or stderr")
			}
		case "tap":
			if len(val) >= 16 || strings.ContainsAny(val, "/ \x00") {
				err = errors.New("not an interface name")
			}
			c.Tap = val
		case "mac":
			c.MAC, err = net.ParseMAC(val)
			if err == nil && (len(c.MAC) != 6 || c.MAC[0]&1 != 0) {
				err = errors.New("not a 6-byte unicast address")
			}
		case "rate":
			c.Limit.Bytes, err = strconv.ParseUint(val, 10, 64)
		case "burst":
			c.Limit.Burst, err = strconv.ParseUint(val, 10, 64)
		case "pps":
			c.Limit.Ops, err = strconv.ParseUint(val, 10, 64)
		default:
			err = errors.New("unknown key (fd, tap, mac, rate, burst, pps)")
		}
		if err != nil {
			return vm.Net{}, fmt.Errorf("%s=%s: %w", k, val, err)
		}
	}
	switch {
	case seen["fd"] == seen["tap"]:
		return vm.Net{}, errors.New("want one of fd=FD or tap=IFNAME")
	case seen["burst"] && !seen["rate"]:
		return vm.Net{}, errors.New("burst= without rate=")
	}
	return c, nil
}

// usageError is a bad command line: exit code control.ExitUsage.
type usageError struct{ error }

func main() {
	start := time.Now()
	os.Exit(run(start, os.Args[1:], os.Stdout, os.Stderr))
}

// printVersion writes the build's stamp in the line format of
// `xeno version`, which xl info parses.
func printVersion(w io.Writer, b abi.Build) {
	fmt.Fprintf(w, "release %s\ninterface %s\nbuild_id %s\nchangeset %s\ncaps %s\n",
		b.Release, b.Release.Interface().Short(), b.BuildID, b.Changeset, b.Caps())
}

func run(start time.Time, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		kernel    = fs.String("kernel", "", "kernel: a bzImage, or a vmlinux ELF with --boot elf")
		initrd    = fs.String("initrd", "", "initramfs")
		cmdline   = fs.String("cmdline", "", "kernel command line")
		memory    = fs.Int("memory", 256, "guest memory in MiB")
		vcpus     = fs.Int("vcpus", 1, "number of vCPUs")
		console   = fs.String("console", "stdio", "console: stdio, pty or unix:PATH")
		ctl       = fs.String("control", "", "control socket path; the exit file goes beside it")
		name      = fs.String("name", "", "domain name")
		uuid      = fs.String("uuid", "", "domain UUID")
		iface     = fs.String("interface", "", "the guest's interface, MAJOR.MINOR[-dev@BUILD]; default: the hv's own")
		unchecked = fs.Bool("unchecked-interface", false, "TESTS ONLY: start even if --interface is refused, presenting the hv's native interface")
		overMem   = fs.Bool("unchecked-memory", false, "TESTS ONLY: start even if --memory is more than the host's MemAvailable (a guest that touches little of its RAM)")
		boot      = fs.String("boot", "auto", "bzimage, elf or auto (elf where KVM emulates kernel mode, else bzimage)")
		paused    = fs.Bool("paused", false, "start with every vCPU stopped; the control socket's resume starts the guest")
		version   = fs.Bool("version", false, "print the release, interface, build id, changeset and caps, and exit")
		logPath   = fs.String("log", "", "write the hv's own messages (and stderr) to this file, capped with rotation to FILE.1")
		conLog    = fs.String("console-log", "", "copy the guest's console output to this file, capped with rotation to FILE.1")
		vsockFlag = fs.String("vsock", "", "virtio-vsock device cid=N,uds=PATH: the guest reaches PATH_PORT, host clients connect through PATH (docs/devices.md)")
		restore   = fs.String("restore", "", "start the domain from this snapshot (docs/snapshot.md) instead of a kernel: a file, or fd=FD, a stream on a descriptor left open across exec; --memory and --vcpus default to the snapshot's")
		jailRoot  = fs.String("jail-root", "", "jailer: an empty directory to build the private root on (needs root and a mount namespace of its own; xl's default)")
		jailUID   = fs.Int("jail-uid", -1, "jailer: the uid to run as once the files are open (with --jail-gid)")
		jailGID   = fs.Int("jail-gid", -1, "jailer: the gid to run as once the files are open")
		jailOpt   = fs.Bool("jail-root-optional", false, "jailer: where the private root cannot be built, say why and carry on without it")
		disks     diskFlags
		nets      netFlags
		jailDirs  dirFlags
	)
	fs.Var(&disks, "disk", "virtio-blk disk PATH[,ro] (repeatable)")
	fs.Var(&nets, "net", "virtio-net device on a tap: fd=FD|tap=IFNAME[,mac=MAC][,rate=BYTES_PER_S][,burst=BYTES][,pps=PACKETS_PER_S] (repeatable)")
	fs.Var(&jailDirs, "jail-dir", "jailer: a directory bound read-write into the private root at its own path, holding the sockets, logs and exit file (repeatable)")
	if err := fs.Parse(args); err != nil {
		return control.ExitUsage
	}
	if *version {
		printVersion(stdout, abi.Current())
		return 0
	}
	exit := func(e control.Exit) int {
		if *ctl != "" {
			if err := vm.WriteExit(*ctl, e); err != nil {
				fmt.Fprintf(stderr, "hv: %v\n", err)
			}
		}
		return e.Code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "hv: %v\n", err)
		code := control.ExitError
		var u usageError
		if errors.As(err, &u) {
			code = control.ExitUsage
		}
		return exit(control.Exit{Reason: control.ReasonError, Detail: err.Error(), Code: code, Time: time.Now().UTC()})
	}
	if *logPath != "" {
		lf, err := logfile.Open(*logPath, logfile.Max)
		if err != nil {
			return fail(err)
		}
		defer lf.Close()
		if err := lf.Stderr(); err != nil {
			return fail(err)
		}
		stderr = lf
	}
	if fs.NArg() > 0 {
		return fail(usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))})
	}
	if *paused && *ctl == "" {
		return fail(usageError{errors.New("--paused needs --control: nothing could resume the domain")})
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *restore != "" {
		for _, n := range []string{"kernel", "initrd", "cmdline", "boot", "interface", "unchecked-interface"} {
			if set[n] {
				return fail(usageError{fmt.Errorf("--%s with --restore: the snapshot holds the guest and its interface", n)})
			}
		}
	} else if *kernel == "" {
		return fail(usageError{errors.New("--kernel is required")})
	}
	var vsock *vm.Vsock
	if *vsockFlag != "" {
		v, err := parseVsock(*vsockFlag)
		if err != nil {
			return fail(usageError{err})
		}
		vsock = v
	}
	// The memory size is the snapshot's unless given: checked once known.
	checkMemory := func() error {
		if *memory < abi.MinMemoryMiB || *memory > abi.MaxMemoryMiB {
			return usageError{fmt.Errorf("--memory %d: want %d to %d MiB", *memory, abi.MinMemoryMiB, abi.MaxMemoryMiB)}
		}
		return checkHostMemory(*memory, *overMem, stderr)
	}
	build := abi.Current()
	var (
		admitted abi.Interface
		compat   bool
		err      error
	)
	if *restore == "" {
		if err := checkMemory(); err != nil {
			return fail(err)
		}
		if admitted, compat, err = admit(build, *iface, *unchecked, stderr); err != nil {
			return fail(err)
		}
	}
	kind := vm.BootKind(*boot)
	switch kind {
	case vm.BootBzImage, vm.BootELF, vm.BootAuto:
	default:
		return fail(usageError{fmt.Errorf("--boot %q: want bzimage, elf or auto", *boot)})
	}
	var pre *opened
	if *jailRoot != "" || *jailUID >= 0 || *jailGID >= 0 {
		j := jailSpec{root: *jailRoot, dirs: jailDirs, uid: *jailUID, gid: *jailGID, rootOptional: *jailOpt, stderr: stderr,
			paths: []string{*ctl, strings.TrimPrefix(*console, "unix:"), *logPath, *conLog}}
		if pre, err = j.enter(*kernel, *initrd, *restore, disks); err != nil {
			return fail(err)
		}
		for i := range disks {
			disks[i].File = pre.disks[i]
		}
	}
	var snap *snapshot.Reader
	if *restore != "" {
		// The snapshot's header says what the guest is: its size, and the
		// interface it was admitted with, which this hv admits or refuses
		// exactly as at creation.
		f, err := pre.snapshotFile(*restore)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if snap, err = snapshot.NewReader(f); err != nil {
			return fail(fmt.Errorf("--restore %s: %w", *restore, err))
		}
		h := snap.Header()
		g, err := abi.ParseInterface(h.Interface)
		if err != nil {
			return fail(fmt.Errorf("--restore %s: interface %q: %w", *restore, h.Interface, err))
		}
		if admitted, compat, err = admitInterface(build, g, false, stderr); err != nil {
			return fail(fmt.Errorf("--restore %s: snapshot of hv %s (build %s): %w", *restore, h.Release, h.BuildID, err))
		}
		// A guest in compat mode stays so: it was told so at boot.
		compat = compat || h.Compat
		if !set["memory"] {
			*memory = h.MemoryMiB
		}
		if !set["vcpus"] {
			*vcpus = h.VCPUs
		}
		if err := checkMemory(); err != nil {
			return fail(err)
		}
	}
	// Every file is checked and read before /dev/kvm is opened: a bad
	// path costs nothing and needs no KVM to be refused.
	var img *vm.Image
	if snap == nil {
		kb, err := pre.read(*kernel, hostfile.MaxKernel)
		if err != nil {
			return fail(fmt.Errorf("kernel: %w", err))
		}
		if img, err = vm.OpenImageAuto(*kernel, kb, kind); err != nil {
			return fail(err)
		}
	}
	var rd []byte
	if *initrd != "" {
		// An initramfs bigger than the guest's RAM cannot fit: refuse it
		// from its size, before it costs the hv its size in memory.
		limit := min(int64(*memory)<<20, hostfile.MaxInitrd)
		if rd, err = pre.read(*initrd, limit); err != nil {
			return fail(fmt.Errorf("initrd: %w", err))
		}
		// Decompressing here saves the guest an emulated gunzip on the
		// software KVM and costs milliseconds anywhere.
		packed := len(rd)
		var unpacked bool
		if rd, unpacked, err = kformat.DecompressInitrd(rd, int64(*memory)<<20); err != nil {
			return fail(fmt.Errorf("initrd: %s: %w", *initrd, err))
		}
		if unpacked {
			fmt.Fprintf(stderr, "hv: initrd: %d bytes decompressed in Go to %d\n", packed, len(rd))
		}
	}
	for _, d := range disks {
		if d.File != nil {
			continue // opened and locked by the jailer
		}
		f, err := hostfile.OpenDisk(d.Path, d.ReadOnly)
		if err != nil {
			return fail(fmt.Errorf("disk: %w", err))
		}
		f.Close()
	}
	cl := *cmdline
	if img != nil {
		if extra := vm.KernelWorkarounds(img); extra != "" {
			cl = strings.TrimSpace(cl + " " + extra)
		}
	}

	con, err := vm.OpenConsole(*console)
	if err != nil {
		return fail(err)
	}
	defer con.Close()
	if *conLog != "" {
		if err := con.LogTo(*conLog, stderr); err != nil {
			return fail(err)
		}
	}
	if con.Path != "" {
		fmt.Fprintf(stderr, "hv: console on %s\n", con.Path)
	}
	var srv *vm.ControlServer
	if *ctl != "" {
		if srv, err = vm.ListenControl(*ctl); err != nil {
			return fail(err)
		}
		defer srv.Close()
	}
	cfg := vm.Config{
		Image: img, Initrd: rd, Cmdline: cl, MemoryMiB: *memory, VCPUs: *vcpus, Disks: disks, Nets: nets, Vsock: vsock,
		Name: *name, UUID: *uuid, Build: build, Admitted: admitted, Compat: compat,
		Console: con, Log: stderr, Start: start, Paused: *paused,
		VCPUStart: enterVCPU, KVM: pre.kvmFile(),
	}
	var v *vm.VM
	if snap != nil {
		if v, err = vm.Restore(cfg, snap); err != nil {
			err = fmt.Errorf("--restore %s: %w", *restore, err)
		}
	} else {
		v, err = vm.New(cfg)
	}
	if err != nil {
		return fail(err)
	}
	defer v.Close()
	con.SetInput(v.ConsoleInput)
	// SIGTERM, SIGINT and SIGHUP destroy the domain the orderly way, so
	// that the exit file still says what happened.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "hv: %v: destroying the domain\n", s)
			v.Destroy()
		case <-v.Done():
		}
	}()
	// Everything the hv opens is open: from here on it runs jailed
	// (docs/security.md), before any guest instruction or control
	// request.
	if err := jail.Lockdown(); err != nil {
		return fail(err)
	}
	if os.Getenv(testForbiddenEnv) == "main" {
		forbiddenSyscall()
	}
	// Served only now, so that no request reaches an unjailed hv: a
	// client that connected earlier waits in the listen backlog.
	if srv != nil {
		go srv.Serve(v)
	}
	e := v.Run()
	fmt.Fprintf(stderr, "hv: domain ended: %s after %.3f s\n", e.Reason, time.Since(start).Seconds())
	return exit(e)
}

// checkHostMemory refuses a guest larger than the host's MemAvailable,
// the rule xl create applies per domain (xl also counts the domains it
// already runs). Where /proc/meminfo cannot be read the hv says so and
// starts: xl has checked.
func checkHostMemory(mib int, unchecked bool, stderr io.Writer) error {
	m, err := hostfile.ReadMem()
	if err != nil {
		fmt.Fprintf(stderr, "hv: warning: --memory not checked against the host: %v\n", err)
		return nil
	}
	if int64(mib) <= m.AvailableMiB {
		return nil
	}
	msg := fmt.Sprintf("--memory %d MiB but the host has %d MiB available (MemAvailable in /proc/meminfo; MemTotal %d MiB)", mib, m.AvailableMiB, m.TotalMiB)
	if unchecked {
		fmt.Fprintf(stderr, "hv: --unchecked-memory: starting anyway: %s\n", msg)
		return nil
	}
	return errors.New(msg)
}

// testForbiddenEnv is a TESTS-ONLY hook (docs/hv.md): "main" makes the
// hv call a syscall no list allows once it is jailed, "vcpu" one that
// only the vCPU threads' filter forbids (openat) on each vCPU thread, so
// that a test can see the filters kill the hv and the reason reported.
const testForbiddenEnv = "XENO_HV_TEST_FORBIDDEN_SYSCALL"

// enterVCPU runs on each vCPU thread before its first guest instruction.
func enterVCPU() error {
	if err := jail.EnterVCPU(); err != nil {
		return err
	}
	if os.Getenv(testForbiddenEnv) == "vcpu" {
		// openat(0, NULL): EFAULT if it ever ran.
		_, _, _ = syscall.Syscall(syscall.SYS_OPENAT, 0, 0, 0)
	}
	return nil
}

// forbiddenSyscall calls mount(NULL, ...), which would fail with EFAULT
// if it ever ran; no filter allows it.
func forbiddenSyscall() { _, _, _ = syscall.Syscall6(syscall.SYS_MOUNT, 0, 0, 0, 0, 0, 0) }

// admit applies the interface policy of hv/abi to --interface.
func admit(build abi.Build, iface string, unchecked bool, stderr io.Writer) (abi.Interface, bool, error) {
	if iface == "" {
		return nativeInterface(build), false, nil
	}
	g, err := abi.ParseInterface(iface)
	if err != nil {
		return abi.Interface{}, false, usageError{fmt.Errorf("--interface: %w", err)}
	}
	return admitInterface(build, g, unchecked, stderr)
}

func nativeInterface(build abi.Build) abi.Interface {
	native := build.Release.Interface()
	if native.Dev {
		native.BuildID = build.BuildID
	}
	return native
}

// admitInterface applies the interface policy to g, a guest's interface
// from --interface or a snapshot: the one place a refusal is worded.
func admitInterface(build abi.Build, g abi.Interface, unchecked bool, stderr io.Writer) (abi.Interface, bool, error) {
	native := nativeInterface(build)
	d := abi.Admit(build, g)
	if d.Verdict == abi.Refuse {
		if unchecked {
			fmt.Fprintf(stderr, "hv: --unchecked-interface: starting anyway with the native interface %s: %s\n", native.Short(), d.Reason)
			return native, false, nil
		}
		return abi.Interface{}, false, errors.New(d.Reason)
	}
	return d.Admitted, d.Verdict == abi.Compat, nil
}
