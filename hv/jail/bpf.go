// Package jail confines the hv process after Firecracker's model: a
// seccomp-BPF allowlist per thread kind, no_new_privs and an empty
// capability set. It also explains, to the hv's parent, a death by the
// filter. See docs/security.md.
package jail

import (
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Rule allows one system call, on x86-64 numbering. With Mask set it is
// allowed only when (low 32 bits of argument Arg >> Shift) & Mask ==
// Value; any other use of that call kills the process. A call may have
// several such rules, alternatives of which one must match (ioctl: any
// KVM request, or TUNSETOFFLOAD).
type Rule struct {
	Nr    uint32
	Arg   int // 0 to 5
	Shift uint32
	Mask  uint32
	Value uint32
}

// seccomp_data offsets (<linux/seccomp.h>): nr, arch, instruction
// pointer, then six 64-bit arguments.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
	// x32SyscallBit marks x32-ABI calls, which share AUDIT_ARCH_X86_64:
	// without this check they would reach the kernel under other numbers.
	x32SyscallBit = 0x40000000
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// Assemble builds a classic BPF seccomp program that allows rules and
// kills the process on anything else, other architectures included.
// Each rule is a self-contained block ending in a return, so every jump
// is short and no label arithmetic can overflow BPF's 8-bit offsets.
func Assemble(rules []Rule) ([]unix.SockFilter, error) {
	const (
		ld    = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		rsh   = unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K
		and   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		allow = unix.SECCOMP_RET_ALLOW
		kill  = unix.SECCOMP_RET_KILL_PROCESS
	)
	var order []uint32
	alts := map[uint32][]Rule{}
	for _, r := range rules {
		prev := alts[r.Nr]
		if len(prev) > 0 && (r.Mask == 0 || prev[0].Mask == 0) {
			return nil, fmt.Errorf("jail: syscall %d listed twice", r.Nr)
		}
		if r.Arg < 0 || r.Arg > 5 {
			return nil, fmt.Errorf("jail: syscall %d: argument %d out of range", r.Nr, r.Arg)
		}
		if len(prev) == 0 {
			order = append(order, r.Nr)
		}
		alts[r.Nr] = append(prev, r)
	}
	p := []unix.SockFilter{
		stmt(ld, offArch),
		jump(jeq, unix.AUDIT_ARCH_X86_64, 1, 0),
		stmt(ret, kill),
		stmt(ld, offNr),
		jump(jge, x32SyscallBit, 0, 1),
		stmt(ret, kill),
	}
	for _, nr := range order {
		rs := alts[nr]
		if rs[0].Mask == 0 {
			p = append(p, jump(jeq, nr, 0, 1), stmt(ret, allow))
			continue
		}
		// Little-endian: the low half of argument n is at 16 + 8n. The
		// number matched, so when no alternative matches it kills at
		// once. Five instructions per alternative keep the skip short.
		if 5*len(rs)+1 > 255 {
			return nil, fmt.Errorf("jail: syscall %d has %d alternatives", nr, len(rs))
		}
		p = append(p, jump(jeq, nr, 0, uint8(5*len(rs)+1)))
		for _, r := range rs {
			p = append(p,
				stmt(ld, uint32(offArgs+8*r.Arg)),
				stmt(rsh, r.Shift),
				stmt(and, r.Mask),
				jump(jeq, r.Value, 0, 1),
				stmt(ret, allow),
			)
		}
		p = append(p, stmt(ret, kill))
	}
	p = append(p, stmt(ret, kill))
	if len(p) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("jail: filter of %d instructions exceeds %d", len(p), unix.BPF_MAXINSNS)
	}
	return p, nil
}

// Install loads a filter for the calling thread, or, with allThreads,
// for every thread of the process (SECCOMP_FILTER_FLAG_TSYNC). Filters
// stack: a later one can only narrow what an earlier one allows. It
// needs no_new_privs (SetNoNewPrivs) unless the caller has
// CAP_SYS_ADMIN.
func Install(rules []Rule, allThreads bool) error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("jail: seccomp filters are written for amd64, not %s", runtime.GOARCH)
	}
	prog, err := Assemble(rules)
	if err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	var flags uintptr
	if allThreads {
		flags = unix.SECCOMP_FILTER_FLAG_TSYNC
	}
	r, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("jail: seccomp: %w", e)
	}
	if r != 0 {
		// TSYNC returns the ID of a thread it could not synchronize.
		return fmt.Errorf("jail: seccomp: thread %d cannot take the filter", r)
	}
	return nil
}

// Union merges rule sets. An unconditional rule for a number is kept
// alone, the first one seen; argument-checked alternatives for a number
// are all kept, once each.
func Union(sets ...[]Rule) []Rule {
	seen := map[uint32][]Rule{}
	var out []Rule
	for _, s := range sets {
		for _, r := range s {
			prev := seen[r.Nr]
			if len(prev) > 0 && (r.Mask == 0 || prev[0].Mask == 0 || slices.Contains(prev, r)) {
				continue
			}
			seen[r.Nr] = append(prev, r)
			out = append(out, r)
		}
	}
	return out
}
