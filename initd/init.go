package initd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/abi"
)

// Main runs PID 1. It never returns: PID 1 exiting panics the kernel.
func Main() {
	// ioperm grants the ports to the calling thread only, and a goroutine
	// that is not locked may resume on another thread after any system
	// call; an in/out there is a SIGSEGV, which kills PID 1. So PID 1's
	// goroutine keeps the thread that asked for the ports.
	runtime.LockOSThread()
	out := os.Stdout
	ports, perr := OpenPorts()
	if perr == nil {
		// First thing, so the hv's boot timer measures kernel time only.
		ports.Outb(abi.PortBootTimer, 1)
	}
	merr := mountAll()
	quietConsole()
	fmt.Fprintln(out, "xeno-init: started")
	if merr != nil {
		fmt.Fprintln(out, "xeno-init:", merr)
	}
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err != nil {
		// No console was open: open the one devtmpfs provides.
		if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
			for fd := 0; fd < 3; fd++ {
				unix.Dup2(int(f.Fd()), fd)
			}
		}
	}
	// xeno-init leads the console's session itself; the command runs as
	// its foreground process group (runReaping). When a session leader
	// exits, the kernel hangs its terminal up, and a hangup throws away
	// what the UART has not sent yet: the recipe's last line was lost
	// ("hypervisor xeno " and no more) when the command led the session.
	if _, err := unix.Setsid(); err == nil {
		unix.IoctlSetInt(0, unix.TIOCSCTTY, 0)
	}
	pinned, err := Pinned()
	if err != nil {
		fmt.Fprintln(out, err)
		powerOff(out, nil, false)
	}
	fmt.Fprintf(out, "xeno-init: pinned guest interface %s\n", pinned)

	sys, haveSys, serr := ReadSysHypervisor("/")
	switch {
	case serr != nil:
		fmt.Fprintf(out, "xeno-init: %v\n", serr)
	case haveSys:
		compat := ""
		if sys.Compat {
			compat = " compat"
		}
		fmt.Fprintf(out, "xeno-init: /sys/hypervisor: xeno %s build %.12s, admitted as %s%s; the kernel is built for %s\n",
			sys.Release, sys.BuildID, sys.Admitted, compat, sys.GuestInterface)
	}

	var info HVInfo
	haveInfo := false
	// iface is the interface line, which the command channel repeats.
	iface := fmt.Sprintf("carrying on as interface %s", pinned.Short())
	if perr != nil {
		iface = "carrying on without the info port"
		fmt.Fprintf(out, "xeno-init: %v; %s\n", perr, iface)
	} else if info, err = ReadInfo(ports); errors.Is(err, ErrNoInfoPort) {
		fmt.Fprintf(out, "xeno-init: %v; %s\n", err, iface)
	} else if err != nil {
		fmt.Fprintf(out, "xeno-init: %v; %s\n", err, iface)
	} else {
		haveInfo = true
		fmt.Fprintf(out, "xeno-init: hv release %s build %s changeset %s caps %q admitted %q\n",
			info.Release, info.BuildID, info.Changeset, info.Caps, info.Admitted)
		if haveSys {
			if err := sys.CheckAgainst(info); err != nil {
				fmt.Fprintf(out, "xeno-init: warning: %v\n", err)
			}
		}
		d, err := Decide(pinned, info)
		if err != nil {
			d = abi.Decision{Verdict: abi.Refuse, Rule: "bad-hv-release", Reason: err.Error()}
		}
		switch d.Verdict {
		case abi.Refuse:
			line := RefuseLine(pinned, info, d)
			fmt.Fprintln(out, line)
			if ShutdownOffered(info) {
				// The reason the hv records is "crash": the guest did not
				// run what it was made for.
				ports.Outb(abi.PortShutdown, abi.ShutdownCrash)
			}
			powerOff(out, nil, false)
		case abi.Compat:
			iface = fmt.Sprintf("running in compat mode as interface %s (%s)", d.Admitted.Short(), d.Rule)
			fmt.Fprintf(out, "xeno-init: %s\n", iface)
		default:
			iface = fmt.Sprintf("running as interface %s (%s)", d.Admitted, d.Rule)
			fmt.Fprintf(out, "xeno-init: %s\n", iface)
		}
	}

	cmdline, _ := os.ReadFile("/proc/cmdline")
	cl := ParseCmdline(string(cmdline))
	var cfg Config
	if b, err := os.ReadFile(ConfigPath); err == nil {
		if cfg, err = ParseConfig(b); err != nil {
			fmt.Fprintln(out, "xeno-init:", err)
		}
	}
	if !cl.NoModules {
		loadModules(out, cfg.Modules)
	}
	// Before the command, which may well be a server: its network is
	// up when it starts.
	setUpNetwork(out, string(cmdline))
	// Ports for the shutdown reason: only where the hv offers the port.
	// (Compat behaviour: 1.1 and older power off through ACPI alone.)
	var p Ports
	if haveInfo && ShutdownOffered(info) {
		p = ports
	}
	// The power button and the end of the command may race; the first
	// one powers off, the other waits for it.
	var once sync.Once
	off := func() {
		once.Do(func() { powerOff(out, p, true) })
		select {}
	}
	go watchPowerButton(out, off)
	startChannel(out, iface)

	argv := Command(cl, cfg)
	fmt.Fprintf(out, "xeno-init: running %q\n", argv)
	code := runReaping(out, argv)
	fmt.Fprintf(out, "xeno-init: %s exited (%s); powering off\n", argv[0], code)
	off()
}

// consoleLevel is the console loglevel xeno-init sets: warnings and
// worse still reach the console, as do oopses and panics.
const consoleLevel = 5

// quietConsole keeps the kernel's informational messages off the console
// from here on (dmesg keeps them all): printk writes between any two bytes
// of a process's output, and a late "clocksource: Switched to ..." broke
// xeno-init's and the recipe's lines in two. A command line that asks for
// kernel messages (loglevel=, debug, ignore_loglevel) keeps them.
func quietConsole() {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "loglevel=") || f == "debug" || f == "ignore_loglevel" {
			return
		}
	}
	const syslogActionConsoleLevel = 8 // syslog(2): the level is the third argument
	unix.Syscall(unix.SYS_SYSLOG, syslogActionConsoleLevel, 0, consoleLevel)
}

func mountAll() error {
	var errs []error
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err))
		}
	}
	return errors.Join(errs...)
}

// moduleInitCompressedFile is MODULE_INIT_COMPRESSED_FILE: the kernel
// decompresses .ko.xz/.ko.zst itself (CONFIG_MODULE_DECOMPRESS).
const moduleInitCompressedFile = 4

func loadModules(out io.Writer, mods []string) {
	for _, m := range mods {
		f, err := os.Open(m)
		if err != nil {
			fmt.Fprintf(out, "xeno-init: module %s: %v\n", m, err)
			continue
		}
		flags := 0
		if strings.HasSuffix(m, ".xz") || strings.HasSuffix(m, ".zst") || strings.HasSuffix(m, ".gz") {
			flags = moduleInitCompressedFile
		}
		err = unix.FinitModule(int(f.Fd()), "", flags)
		f.Close()
		switch {
		case err == nil:
			fmt.Fprintf(out, "xeno-init: loaded %s\n", strings.TrimSuffix(filepath.Base(m), ".ko"))
		case errors.Is(err, unix.EEXIST):
		default:
			fmt.Fprintf(out, "xeno-init: module %s: %v\n", m, err)
		}
	}
}

// runReaping runs argv on the console and reaps every child until argv's
// process ends; orphans re-parented to PID 1 are reaped on the way.
func runReaping(out io.Writer, argv []string) string {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux"}
	cmd.Dir = "/"
	// The foreground process group of the console, which xeno-init's
	// session holds (see Main), gives a shell job control and ^C; without
	// a controlling tty, a plain process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Foreground: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err2 := cmd.Start(); err2 != nil {
			return fmt.Sprintf("could not start: %v", err2)
		}
	}
	pid := cmd.Process.Pid
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Sprintf("wait: %v", err)
		}
		if got == pid {
			if ws.Signaled() {
				return fmt.Sprintf("signal %v", ws.Signal())
			}
			return fmt.Sprintf("status %d", ws.ExitStatus())
		}
	}
}

// powerOff ends the system: stop what is left, sync, and power off. With
// ports (an hv offering the shutdown port), the reason goes there first.
func powerOff(out io.Writer, p Ports, clean bool) {
	if clean {
		unix.Kill(-1, unix.SIGTERM)
		time.Sleep(200 * time.Millisecond)
		unix.Kill(-1, unix.SIGKILL)
	}
	unix.Sync()
	// What the command wrote may still sit in the tty and the UART; the
	// shutdown port below ends the domain at once, so wait until the
	// console has sent it. Seen lost: the recipe's last line.
	drainConsole()
	if p != nil {
		// The power button calls this from another goroutine, on a thread
		// that may not hold the ports (see Main): ask for them here.
		runtime.LockOSThread()
		if _, err := OpenPorts(); err == nil {
			p.Outb(abi.PortShutdown, abi.ShutdownPoweroff)
		}
	}
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(out, "xeno-init: power off failed: %v; halting\n", err)
	unix.Reboot(unix.LINUX_REBOOT_CMD_HALT)
	for {
		time.Sleep(time.Hour)
	}
}

// drainConsole waits, up to 2 s, until the tty has handed everything
// written to the UART. tcdrain (TCSBRK) would refuse: once the command
// has ended, xeno-init is not in the console's foreground process group,
// and its process group is orphaned, so job control answers EIO.
// TIOCOUTQ has no such check.
func drainConsole() {
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		n1, err1 := unix.IoctlGetInt(1, unix.TIOCOUTQ)
		n2, err2 := unix.IoctlGetInt(2, unix.TIOCOUTQ)
		if (err1 != nil || n1 == 0) && (err2 != nil || n2 == 0) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Input events, from linux/input-event-codes.h.
const (
	evKey    = 1
	keyPower = 116
	// struct input_event on 64-bit: timeval (16), type, code, value.
	inputEventSize = 24
)

// watchPowerButton powers off on KEY_POWER from any input device (the
// ACPI power button driver reports it there).
func watchPowerButton(out io.Writer, off func()) {
	// The button driver may bind after init starts; look a few times.
	seen := map[string]bool{}
	for try := 0; try < 10; try++ {
		devs, _ := filepath.Glob("/dev/input/event*")
		opened := 0
		for _, d := range devs {
			if seen[d] {
				continue
			}
			seen[d] = true
			// Opened here, before the line below says so: from then on
			// the kernel queues every key event for us.
			f, err := os.Open(d)
			if err != nil {
				continue
			}
			opened++
			go readKeys(out, f, off)
		}
		if opened > 0 {
			fmt.Fprintf(out, "xeno-init: watching %d input devices for the power button\n", opened)
		}
		time.Sleep(time.Second)
	}
}

func readKeys(out io.Writer, f *os.File, off func()) {
	defer f.Close()
	ev := make([]byte, inputEventSize)
	for {
		if _, err := io.ReadFull(f, ev); err != nil {
			return
		}
		typ := binary.LittleEndian.Uint16(ev[16:])
		code := binary.LittleEndian.Uint16(ev[18:])
		val := int32(binary.LittleEndian.Uint32(ev[20:]))
		if typ == evKey && code == keyPower && val == 1 {
			fmt.Fprintln(out, "xeno-init: power button pressed; powering off")
			off()
		}
	}
}
