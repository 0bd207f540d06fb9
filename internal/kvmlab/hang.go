package kvmlab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/xeno-hv/xeno/hv/kvm"
)

// hangReport is what the lab's CPUs were doing when its console went
// silent: a hung lab prints nothing itself (no NMI watchdog on TCG), and
// without this a lock-up could not be told from a hung test, a spinning
// lab CPU or a stuck QEMU. The registers' addresses are read against the
// "kvmlab: text" line that the lab's init prints (KASLR).
func hangReport(qmpSock string, pid int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s; QEMU used %s of CPU in the last second\n", hangMark, qemuCPU(pid))
	out, err := qmp(qmpSock, 20*time.Second, []hmp{{"info cpus", -1}, {"info registers -a", -1}})
	b.WriteString(out)
	if err == nil {
		// Each CPU's stack, for the return addresses on it (HMP's x
		// knows no $rsp on x86-64).
		var cmds []hmp
		for i, m := range rspRe.FindAllStringSubmatch(out, -1) {
			cmds = append(cmds, hmp{"x/64gx 0x" + m[1], i})
		}
		// A second look tells a CPU that loops from one that is stuck.
		cmds = append(cmds, hmp{"info registers -a", -1})
		out, err = qmp(qmpSock, 20*time.Second, cmds)
		b.WriteString(out)
	}
	if err != nil {
		fmt.Fprintf(&b, "kvmlab: QEMU monitor: %v\n", err)
	}
	b.WriteString("=== kvmlab: end of the hang report\n")
	return b.String()
}

var rspRe = regexp.MustCompile(`[RE]SP=([0-9a-f]+)`)

// hangMark starts a hang report in a lab's console.
const hangMark = "\n=== kvmlab: the lab hung"

// failedConsole is what a test logs of a failed lab's console: its last n
// lines, or, when a hang report ends it, the n lines before the report
// and the report's QEMU CPU use, CPU headers and instruction pointers. A
// plain tail would show only the end of the report's second register
// dump (FPU and vector registers), which says nothing of where the lab
// was stuck.
func failedConsole(console string, n int) string {
	before, report, hung := strings.Cut(console, hangMark)
	if !hung {
		return tail(console, n)
	}
	var b strings.Builder
	b.WriteString(tail(before, n))
	b.WriteString(hangMark)
	for i, l := range strings.Split(report, "\n") {
		if i == 0 || strings.HasPrefix(l, "CPU#") || strings.HasPrefix(l, "(qemu) info") ||
			strings.Contains(l, "IP=") || strings.Contains(l, "end of the hang report") {
			b.WriteString(l)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// qemuCPU is the share of one host CPU that process pid used over a second.
func qemuCPU(pid int) string {
	ticks := func() (int64, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// utime and stime are fields 14 and 15; the command name before
		// them is parenthesised and may hold spaces.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			return 0, fmt.Errorf("short /proc/%d/stat", pid)
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		k, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("bad /proc/%d/stat", pid)
		}
		return u + k, nil
	}
	t0, err := ticks()
	if err != nil {
		return "? (" + err.Error() + ")"
	}
	time.Sleep(time.Second)
	t1, err := ticks()
	if err != nil {
		return "? (" + err.Error() + ")"
	}
	// USER_HZ is 100 on every Linux this runs on.
	return fmt.Sprintf("%d%%", t1-t0)
}

// hmp is one human-monitor command, run on one CPU's view (cpu >= 0) or
// the monitor's default: QMP starts a fresh HMP for each, so a "cpu N"
// would not carry over.
type hmp struct {
	cmd string
	cpu int
}

// qmp runs HMP commands through QEMU's QMP socket and returns their output.
func qmp(sock string, timeout time.Duration, cmds []hmp) (string, error) {
	c, err := net.DialTimeout("unix", sock, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(c)
	enc := json.NewEncoder(c)
	// reply reads up to the next answer, skipping events.
	reply := func() (json.RawMessage, error) {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return nil, err
			}
			var m struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if err := json.Unmarshal(line, &m); err != nil {
				return nil, fmt.Errorf("bad QMP line %q: %w", line, err)
			}
			if m.Error != nil {
				return nil, fmt.Errorf("QMP: %s", m.Error.Desc)
			}
			if m.Return != nil {
				return m.Return, nil
			}
		}
	}
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		return "", err
	}
	if err := enc.Encode(map[string]string{"execute": "qmp_capabilities"}); err != nil {
		return "", err
	}
	if _, err := reply(); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range cmds {
		args := map[string]any{"command-line": c.cmd}
		label := c.cmd
		if c.cpu >= 0 {
			args["cpu-index"] = c.cpu
			label = fmt.Sprintf("%s (CPU %d)", c.cmd, c.cpu)
		}
		if err := enc.Encode(map[string]any{"execute": "human-monitor-command", "arguments": args}); err != nil {
			return b.String(), err
		}
		raw, err := reply()
		if err != nil {
			return b.String(), fmt.Errorf("%s: %w", label, err)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return b.String(), fmt.Errorf("%s: %w", label, err)
		}
		fmt.Fprintf(&b, "(qemu) %s\n%s", label, strings.ReplaceAll(s, "\r\n", "\n"))
	}
	return b.String(), nil
}

// HoldKVM runs inside the lab, from labInit, for the lab's whole life: it
// holds one KVM VM with an in-kernel LAPIC and a vCPU, and writes ready
// once it does. While any VM exists, KVM's static keys (the scheduler's
// preempt_notifier_key, the LAPIC's apic_sw_disabled) stay on, so an hv's
// VM coming and going patches no kernel text. Each such patch puts an
// INT3 into __schedule for a moment, and TCG now and then keeps running
// a translation of that INT3 after the text is restored; the kprobe
// handler then backs up to re-run the "vanished" breakpoint, for ever,
// with interrupts off on both lab CPUs (docs/kvm-notes.md). It returns
// only on error.
func HoldKVM(ready string) error {
	sys, err := kvm.Open()
	if err != nil {
		return err
	}
	vm, err := sys.CreateVM()
	if err != nil {
		return err
	}
	if err := vm.CreateIRQChip(); err != nil {
		return err
	}
	if _, err := vm.CreateVCPU(0); err != nil {
		return err
	}
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		return err
	}
	for { // select{} would be taken for a deadlock, and end the program
		time.Sleep(time.Hour)
	}
}
