package toolstack

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/snapshot"
	"github.com/xeno-hv/xeno/internal/atomicfile"
	"github.com/xeno-hv/xeno/internal/hostfile"
	"github.com/xeno-hv/xeno/toolstack/hostnet"
)

// xl save, restore and their use by migrate: the hv writes and reads the
// snapshot (docs/snapshot.md); the toolstack opens the file, puts what it
// needs to recreate the domain into the snapshot's header, and at restore
// decides, as at creation, whether the hv that will run it admits it.

// SavedDomain is what the toolstack keeps in a snapshot's header
// (Header.Config, opaque to the hv): the domain's resolved config (name,
// UUID, on_* actions, memory, vCPUs, kernel and command line for a later
// restart, disks, vifs) and how its interface was declared.
type SavedDomain struct {
	Version       int      `json:"version"` // savedVersion
	Config        *Config  `json:"config"`
	Guest         string   `json:"guest_interface"` // as declared, passed to a restart's hv --interface
	Declared      string   `json:"declared_by"`
	Unchecked     bool     `json:"unchecked_interface,omitempty"`
	AllowUnjailed []string `json:"allow_unjailed,omitempty"`
	// Vsock says whether the domain had its vsock device, which xl
	// gives only where the socket's path fits (MaxVsockPath): the
	// restored domain must have the devices the snapshot holds. Absent
	// from older snapshots, whose restore decides as a create does.
	Vsock *bool `json:"vsock,omitempty"`
}

// savedVersion is SavedDomain's layout; a restore refuses another.
const savedVersion = 1

// Save flags, in xl save's words: the domain ends (the default), stays
// paused (-p) or runs on (-c).
const (
	AfterDestroy = control.SaveDestroy
	AfterPause   = control.SavePause
	AfterResume  = control.SaveResume
)

// saveTimeout bounds one save: writing the guest's RAM to a file or a
// pipe. A timeout that expired while the hv still wrote would leave a
// domain that the hv then ends (after=destroy) and a file the caller
// removed, so it is generous: 2 minutes and a second per 32 MiB.
func saveTimeout(memMiB int64) time.Duration {
	return 2*time.Minute + time.Duration(memMiB/32)*time.Second
}

// savedOf is what a save of r puts into the snapshot; cfg, if not nil,
// replaces r's config (xl save DOM FILE CFG) but keeps its UUID: it is
// still the same domain.
func savedOf(r *Record, cfg *Config) ([]byte, error) {
	sd := SavedDomain{Version: savedVersion, Config: r.Config, Guest: r.Guest, Declared: r.Declared,
		Unchecked: r.Unchecked, AllowUnjailed: r.AllowUnjailed}
	vsock := r.Vsock != ""
	sd.Vsock = &vsock
	if cfg != nil {
		c := *cfg
		c.UUID = r.UUID
		sd.Config = &c
	}
	b, err := json.Marshal(sd)
	if err != nil {
		return nil, fmt.Errorf("toolstack: save: %w", err)
	}
	return b, nil
}

// Save writes domain dom's snapshot to path (xl save). The hv writes it
// into a temporary file beside path, which is fsynced and renamed over
// path once the hv says the snapshot is whole; on any failure it is
// removed and path is untouched. after is AfterDestroy, AfterPause or
// AfterResume; with AfterDestroy Save returns once the domain is gone
// from the state directory. cfg, if not nil, is stored instead of the
// domain's config (xl save's CFG).
func (t *Toolstack) Save(dom, path, after string, cfg *Config) error {
	switch after {
	case AfterDestroy, AfterPause, AfterResume:
	default:
		return fmt.Errorf("toolstack: save: after %q: want %s, %s or %s", after, AfterDestroy, AfterPause, AfterResume)
	}
	r, err := t.running(dom)
	if err != nil {
		return err
	}
	saved, err := savedOf(r, cfg)
	if err != nil {
		return err
	}
	req := control.Request{Cmd: control.CmdSave, After: after, Config: saved}
	err = atomicfile.Write(path, 0o600, func(f *os.File) error {
		_, err := control.CallFile(r.Control, req, f, saveTimeout(r.Config.MemoryMiB))
		return err
	})
	if err != nil {
		return fmt.Errorf("toolstack: save domain %s: %w", r.Name, err)
	}
	if after == AfterDestroy {
		// The hv ends with reason "saved" and the monitor removes the
		// domain (onDeath); wait for it, so that a restore that
		// follows finds the name free.
		if err := t.WaitGone(r.ID, 30*time.Second); err != nil {
			return fmt.Errorf("toolstack: domain %s was saved to %s but has not gone: %w", r.Name, path, err)
		}
	}
	return nil
}

// ReadSnapshotHeader reads only the header of the snapshot at path: who
// wrote it, the interface it was admitted with, its size, and the
// toolstack's SavedDomain (nil if the snapshot carries none, as one
// written by hand through the control socket). The rest of the file is
// the hv's to check.
func ReadSnapshotHeader(path string) (snapshot.Header, *SavedDomain, error) {
	f, _, err := hostfile.OpenRegular(path, snapshot.MaxSize)
	if err != nil {
		return snapshot.Header{}, nil, fmt.Errorf("toolstack: restore: %w", err)
	}
	defer f.Close()
	return readSnapshotHeader(f, path)
}

// readSnapshotHeader is ReadSnapshotHeader on the stream r, called name
// in errors. It reads the header and what the snapshot reader reads
// ahead, and nothing more.
func readSnapshotHeader(r io.Reader, name string) (snapshot.Header, *SavedDomain, error) {
	sr, err := snapshot.NewReader(r)
	if err != nil {
		return snapshot.Header{}, nil, fmt.Errorf("toolstack: restore: %s: %w", name, err)
	}
	h := sr.Header()
	if len(h.Config) == 0 {
		return h, nil, nil
	}
	var sd SavedDomain
	if err := json.Unmarshal(h.Config, &sd); err != nil {
		return h, nil, fmt.Errorf("toolstack: restore: %s: the domain config in the snapshot's header: %w", name, err)
	}
	if sd.Version != savedVersion || sd.Config == nil {
		return h, nil, fmt.Errorf("toolstack: restore: %s: the domain config in the snapshot's header has version %d and config %v; this xl reads version %d", name, sd.Version, sd.Config != nil, savedVersion)
	}
	return h, &sd, nil
}

// RestoreOptions are xl restore's.
type RestoreOptions struct {
	// Config replaces the snapshot's (xl restore CFG FILE); its UUID is
	// replaced by the snapshot's, which names the domain.
	Config *Config
	// Build is the hv that will run the domain (hv --version), whose
	// abi.Admit decides.
	Build  abi.Build
	Host   Host
	Paused bool // -p: the restored domain waits for xl unpause
}

// CheckRestore decides whether the snapshot at path may be restored, as
// Check decides for xl create: the config (the snapshot's or opt.Config)
// must match the snapshot's memory, vCPUs and devices, the host must fit
// it, its disks and bridges must be there, and abi.Admit must admit the
// snapshot's interface on opt.Build. It returns the plan to Reserve; the
// error is a *Refusal, or why the file cannot be read.
func CheckRestore(path string, opt RestoreOptions) (*Plan, error) {
	h, sd, err := ReadSnapshotHeader(path)
	if err != nil {
		return nil, err
	}
	return checkRestore(h, sd, path, opt)
}

// checkRestore is CheckRestore's decision on a header and SavedDomain
// already read, from the snapshot that refusals call name: a file's path,
// or migrate-receive's stream, which it decides on before the rest comes.
func checkRestore(h snapshot.Header, sd *SavedDomain, name string, opt RestoreOptions) (*Plan, error) {
	cfg := opt.Config
	switch {
	case cfg == nil && sd == nil:
		return nil, &Refusal{Check: "snapshot", File: name, Rule: "config", Msg: "the snapshot carries no domain config (it was not written by xl save); give one: xl restore CFG FILE"}
	case cfg == nil:
		cfg = sd.Config
	case sd != nil:
		c := *cfg
		c.UUID = sd.Config.UUID
		cfg = &c
	}
	refuse := func(rule, format string, a ...any) error {
		return &Refusal{Check: "snapshot", File: name, Rule: rule, Msg: fmt.Sprintf(format, a...)}
	}
	if cfg.MemoryMiB != int64(h.MemoryMiB) || cfg.VCPUs != h.VCPUs {
		return nil, refuse("size", "the snapshot holds %d MiB and %d vCPUs, the config says memory = %d and vcpus = %d; a domain is restored as it was saved", h.MemoryMiB, h.VCPUs, cfg.MemoryMiB, cfg.VCPUs)
	}
	if sd != nil && (len(cfg.Disks) != len(sd.Config.Disks) || len(cfg.Vifs) != len(sd.Config.Vifs)) {
		return nil, refuse("devices", "the snapshot's domain has %d disks and %d vifs, the config %d and %d; a restored domain keeps its devices (only their host sides may change)", len(sd.Config.Disks), len(sd.Config.Vifs), len(cfg.Disks), len(cfg.Vifs))
	}
	p := &Plan{Config: cfg, Host: opt.Host}
	if sd != nil {
		p.Guest, p.Declared, p.AllowUnjailed, p.Vsock = sd.Guest, sd.Declared, sd.AllowUnjailed, sd.Vsock
	}
	if err := checkHost(cfg, opt.Host); err != nil {
		return p, err
	}
	for _, d := range cfg.Disks {
		if err := checkDisk(d); err != nil {
			return p, err
		}
	}
	for i, v := range cfg.Vifs {
		if err := hostnet.CheckBridge(v.Bridge); err != nil {
			return p, &Refusal{Check: "network", Rule: "bridge", Msg: fmt.Sprintf("vif %d: %v", i, err), Err: err}
		}
	}
	// The interface the domain runs as is the one it was admitted with:
	// the hv that restores it admits that, or refuses, as at creation.
	g, err := abi.ParseInterface(h.Interface)
	if err != nil {
		return p, refuse("syntax", "interface %q: %v", h.Interface, err)
	}
	from := fmt.Sprintf("%s (snapshot of hv %s, build %s)", name, h.Release, h.BuildID)
	if p.Guest == "" {
		p.Guest, p.Declared = h.Interface, from
	}
	if _, err := p.admit(opt.Build, g, from, false); err != nil {
		return p, err
	}
	// A guest in compat mode stays so: it was told so at boot.
	p.Compat = p.Compat || h.Compat
	return p, nil
}

// Restore starts the domain of a snapshot under a new ID, with its name
// and UUID (xl restore, xl migrate-receive): p is CheckRestore's plan,
// opt.Restore the snapshot's path or opt.Stream the stream. It reserves
// the ID (refused if the name is in use), and the monitor starts the hv
// with --restore instead of a kernel, jailed, in its cgroup and with its
// taps, as a create does. It returns once the hv answers, or with why it
// did not start and nothing left.
func (t *Toolstack) Restore(p *Plan, opt CreateOptions) (*Record, error) {
	rec, err := t.Reserve(p)
	if err != nil {
		return nil, err
	}
	if err := t.StartMonitor(rec, opt); err != nil {
		return nil, err
	}
	return rec, nil
}
