// Package control is the wire contract between one hv process and the
// toolstack: the control-socket messages (JSON lines over a UNIX socket),
// the exit-status file, and the process exit codes. The hv serves it, the
// toolstack speaks it; neither imports the other.
package control

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// Commands accepted on the control socket.
const (
	CmdStatus   = "status"
	CmdPause    = "pause"
	CmdResume   = "resume"
	CmdShutdown = "shutdown" // ACPI power button: the guest decides
	// CmdReboot asks the guest to reboot: the ACPI power button, and the
	// clean stop that follows counts as a reboot (on_reboot applies).
	CmdReboot  = "reboot"
	CmdReset   = "reset"   // hard reset, the guest is not asked (xl reboot -F)
	CmdDestroy = "destroy" // stop now, exit reason "destroyed"
	// CmdSave writes the domain's snapshot (docs/snapshot.md) to the
	// file passed with the request line (SCM_RIGHTS, CallFile): the
	// jailed hv can open no file of its own. After says what then.
	CmdSave = "save"
)

// What a save leaves, in xl save's words: the domain ends (the default,
// exit reason "saved"), stays paused (-p) or runs on (-c).
const (
	SaveDestroy = "destroy"
	SavePause   = "pause"
	SaveResume  = "resume"
)

// Request is one line sent to the hv.
type Request struct {
	Cmd string `json:"cmd"`
	// After is CmdSave's SaveDestroy (if empty), SavePause or SaveResume.
	After string `json:"after,omitempty"`
	// Config is CmdSave's domain config as the toolstack keeps it, put
	// in the snapshot's header for the restoring toolstack.
	Config json.RawMessage `json:"config,omitempty"`
	// Live asks CmdSave for a live save (xl migrate): RAM is sent while
	// the domain runs, then again the pages it dirtied, round by round,
	// and the domain is paused only for the last round
	// (docs/snapshot.md). Without it the domain is paused first.
	Live bool `json:"live,omitempty"`
}

// Response is the hv's one-line answer.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	// Save reports a CmdSave that succeeded.
	Save *SaveStats `json:"save,omitempty"`
}

// SaveStats is what a save did: its rounds of RAM, the last one with
// the domain paused, and how long the domain was paused for it.
type SaveStats struct {
	Live   bool        `json:"live"`
	Rounds []SaveRound `json:"rounds"`
	// Pages is the number of 4 KiB pages sent in all rounds; Bytes the
	// stream's length.
	Pages uint64 `json:"pages"`
	Bytes int64  `json:"bytes"`
	// DowntimeNS is the time from the pause to the stream's end (the
	// domain's downtime on this side).
	DowntimeNS int64 `json:"downtime_ns"`
	// Stop says why a live save stopped iterating.
	Stop string `json:"stop,omitempty"`
	// DirtyLog is how a live save read KVM's dirty log: "manual"
	// (KVM_CLEAR_DIRTY_LOG protects pages just before they are read,
	// as QEMU does) or "get" (KVM_GET_DIRTY_LOG protects them all as
	// it returns them, on a KVM without manual protection).
	DirtyLog string `json:"dirty_log,omitempty"`
}

// SaveRound is one round of a save's RAM: the pages sent in it (all
// non-zero ones in the first, the dirtied ones in later ones).
type SaveRound struct {
	Pages  uint64 `json:"pages"`
	TimeNS int64  `json:"time_ns"`
	Paused bool   `json:"paused"`
}

// States of a running hv.
const (
	StateRunning = "running"
	StatePaused  = "paused"
	StateBlocked = "blocked" // every vCPU is halted waiting for an interrupt
)

// Status describes a live domain.
type Status struct {
	State     string `json:"state"`
	Name      string `json:"name"`
	UUID      string `json:"uuid"`
	PID       int    `json:"pid"`
	VCPUs     int    `json:"vcpus"`
	MemoryMiB int    `json:"memory_mib"`
	Interface string `json:"interface"` // admitted, e.g. "1.1"
	Compat    bool   `json:"compat"`
	UptimeNS  int64  `json:"uptime_ns"`
	CPUTimeNS int64  `json:"cpu_time_ns"` // summed vCPU thread time
	// BootTimerNS is the time from process start to the guest's first
	// write of the boot-timer port, 0 until it happens.
	BootTimerNS int64 `json:"boot_timer_ns"`
	// Net has one entry per virtio-net device, in --net order.
	Net []NetStatus `json:"net,omitempty"`
}

// NetStatus is one virtio-net device: its identity and counters since
// the hv started. Rx is towards the guest, tx from it.
type NetStatus struct {
	Index     int    `json:"index"`
	MAC       string `json:"mac"`
	Tap       string `json:"tap"` // the interface name (TUNGETIFF)
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	// RxDropped: frames from the tap larger than the guest's receive
	// buffer, or read before a device reset. TxDropped: the guest's
	// frames with a bad size or header, or refused by the tap.
	RxDropped uint64        `json:"rx_dropped"`
	TxDropped uint64        `json:"tx_dropped"`
	RateLimit *NetRateLimit `json:"rate_limit,omitempty"`
}

// NetRateLimit is a network device's limiter, applied to each direction
// on its own. It delays and never drops: Throttled counts the waits.
type NetRateLimit struct {
	BytesPerSec   uint64 `json:"bytes_per_sec,omitempty"`
	Burst         uint64 `json:"burst,omitempty"`
	PacketsPerSec uint64 `json:"packets_per_sec,omitempty"`
	RxThrottled   uint64 `json:"rx_throttled"`
	TxThrottled   uint64 `json:"tx_throttled"`
}

// Exit reasons, in the exit file and as process exit codes.
const (
	ReasonPoweroff  = "poweroff"
	ReasonReboot    = "reboot"
	ReasonCrash     = "crash"
	ReasonDestroyed = "destroyed"
	ReasonSaved     = "saved" // saved to a snapshot by CmdSave, which ended it
	ReasonError     = "error" // the hv itself failed (bad arguments, no KVM, ...)
)

// Process exit codes of hv. 0 is a clean poweroff so that shell scripts
// see a guest that powered off as success.
const (
	ExitPoweroff  = 0
	ExitError     = 1
	ExitUsage     = 2
	ExitReboot    = 10
	ExitCrash     = 11
	ExitDestroyed = 12
	ExitSaved     = 13
)

// ExitCode maps a reason to the process exit code.
func ExitCode(reason string) int {
	switch reason {
	case ReasonPoweroff:
		return ExitPoweroff
	case ReasonReboot:
		return ExitReboot
	case ReasonCrash:
		return ExitCrash
	case ReasonDestroyed:
		return ExitDestroyed
	case ReasonSaved:
		return ExitSaved
	}
	return ExitError
}

// ReasonForCode is the inverse of ExitCode, for a caller that has only
// the exit code (the exit file may be missing after kill -9).
func ReasonForCode(code int) string {
	switch code {
	case ExitPoweroff:
		return ReasonPoweroff
	case ExitReboot:
		return ReasonReboot
	case ExitCrash:
		return ReasonCrash
	case ExitDestroyed:
		return ReasonDestroyed
	case ExitSaved:
		return ReasonSaved
	}
	return ReasonError
}

// Exit is written, atomically, to ExitFile(control socket) when hv ends.
type Exit struct {
	Reason string    `json:"reason"`
	Detail string    `json:"detail,omitempty"` // e.g. the crash's register dump summary
	Code   int       `json:"code"`
	Time   time.Time `json:"time"`
}

// ExitFile is where the hv whose control socket is sock writes its Exit.
func ExitFile(sock string) string {
	return filepath.Join(filepath.Dir(sock), "exit.json")
}

// Call sends one request and reads one response.
func Call(sock string, cmd string, timeout time.Duration) (*Response, error) {
	return CallFile(sock, Request{Cmd: cmd}, nil, timeout)
}

// CallFile sends req, with f (if not nil) passed to the hv with the
// request line as SCM_RIGHTS, and reads one response.
func CallFile(sock string, req Request, f *os.File, timeout time.Duration) (*Response, error) {
	cmd := req.Cmd
	// The socket's directory is the jailed hv's (docs/security.md): a
	// bent hv could put a symlink there to another program's socket,
	// which its caller (root) would then talk to.
	if fi, err := os.Lstat(sock); err == nil && fi.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("control: %s: not a socket (%v)", sock, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", sock, timeout)
	if err != nil {
		return nil, fmt.Errorf("control: %s: %w", sock, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("control: %s: %s: %w", sock, cmd, err)
	}
	line = append(line, '\n')
	var oob []byte
	if f != nil {
		oob = syscall.UnixRights(int(f.Fd()))
	}
	if _, _, err := c.(*net.UnixConn).WriteMsgUnix(line, oob, nil); err != nil {
		return nil, fmt.Errorf("control: %s: send %s: %w", sock, cmd, err)
	}
	if f != nil {
		runtime.KeepAlive(f) // its fd was sent, not the file: keep it open until then
	}
	reply, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("control: %s: read reply to %s: %w", sock, cmd, err)
	}
	var r Response
	if err := json.Unmarshal(reply, &r); err != nil {
		return nil, fmt.Errorf("control: %s: bad reply to %s: %w", sock, cmd, err)
	}
	if !r.OK {
		return &r, fmt.Errorf("control: %s: %s: %s", sock, cmd, r.Error)
	}
	return &r, nil
}
