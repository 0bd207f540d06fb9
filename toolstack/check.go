package toolstack

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/xeno-hv/xeno/builder/manifest"
	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/internal/hostfile"
	"github.com/xeno-hv/xeno/kernels/kformat"
	"github.com/xeno-hv/xeno/toolstack/hostnet"
)

// Refusal is why a domain may not be created. xl prints it and exits
// non-zero; nothing has been started or recorded when it is returned.
type Refusal struct {
	Check string // "kernel", "host", "interface", "ramdisk", "disk", "network"
	File  string // the file the refusal is about, if any
	Rule  string // the rule that decided, e.g. abi.RuleNewer or "boot-protocol"
	Msg   string
	Err   error // the underlying error, for errors.Is
}

func (r *Refusal) Error() string {
	s := "toolstack: refused (" + r.Check
	if r.Rule != "" {
		s += ", rule " + r.Rule
	}
	s += "): "
	if r.File != "" {
		s += r.File + ": "
	}
	return s + r.Msg
}

func (r *Refusal) Unwrap() error { return r.Err }

// CheckResult is one line of what the check found, for xl create -n.
type CheckResult struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Plan is a checked domain: the config, the interface the guest declares
// (and where it says so), the policy's decision, and every check's result.
type Plan struct {
	Config   *Config       `json:"config"`
	Guest    string        `json:"guest_interface"` // as passed to hv --interface
	Declared string        `json:"declared_by"`     // where Guest came from
	Decision abi.Decision  `json:"-"`
	Verdict  string        `json:"verdict"`
	Rule     string        `json:"rule"`
	Reason   string        `json:"reason"`
	Admitted string        `json:"admitted,omitempty"`
	Compat   bool          `json:"compat"`
	HV       string        `json:"hv_release"`
	Checks   []CheckResult `json:"checks"`
	Warnings []string      `json:"warnings,omitempty"`
	// Host is the reading the checks used. Reserve checks the new
	// domain's memory against it and the domains already there.
	Host Host `json:"-"`
	// Unchecked is the test-only bypass of the interface check: the
	// toolstack records the decision but does not refuse on it.
	Unchecked bool `json:"unchecked_interface,omitempty"`
	// AllowUnjailed are the jail's layers the operator allows off where
	// the host cannot give them (xl create --allow-unjailed).
	AllowUnjailed []string `json:"allow_unjailed,omitempty"`
	// Vsock is, for a restore, whether the saved domain had its vsock
	// device (SavedDomain.Vsock); nil for a create.
	Vsock *bool `json:"-"`
}

// Host is what the host offers, for the fit check and xl info.
type Host struct {
	TotalMiB int64
	FreeMiB  int64
	CPUs     int
}

// ReadHost reads /proc/meminfo (MemTotal, MemAvailable) and the CPUs this
// process may run on.
func ReadHost() (Host, error) {
	h := Host{CPUs: runtime.NumCPU()}
	m, err := hostfile.ReadMem()
	if err != nil {
		return h, fmt.Errorf("toolstack: %w", err)
	}
	h.TotalMiB, h.FreeMiB = m.TotalMiB, m.AvailableMiB
	return h, nil
}

// CheckOptions adjust Check.
type CheckOptions struct {
	Build     abi.Build
	Host      Host
	Unchecked bool // test-only: do not refuse on the interface decision
}

// Check runs every check that libxc's loader probe would, before anything
// is started: the kernel image, the host fit, the ramdisk and disks, and
// the guest interface against the hv's policy (abi.Admit). It returns the
// Plan even on refusal, so that xl create -n can show every result; the
// error is a *Refusal.
func Check(cfg *Config, opt CheckOptions) (*Plan, error) {
	p := &Plan{Config: cfg, HV: opt.Build.Release.String(), Unchecked: opt.Unchecked, Host: opt.Host}
	var first error
	add := func(check string, err error, okDetail string) {
		if err != nil {
			p.Checks = append(p.Checks, CheckResult{Check: check, Detail: err.Error()})
			if first == nil {
				first = err
			}
			return
		}
		p.Checks = append(p.Checks, CheckResult{Check: check, OK: true, Detail: okDetail})
	}

	detail, err := CheckKernel(cfg.Kernel)
	add("kernel", err, detail)
	add("host", checkHost(cfg, opt.Host), fmt.Sprintf("%d MiB of %d MiB available, %d of %d CPUs", cfg.MemoryMiB, opt.Host.FreeMiB, cfg.VCPUs, opt.Host.CPUs))
	if cfg.Ramdisk != "" {
		add("ramdisk", checkRamdisk(cfg), cfg.Ramdisk)
	}
	for _, d := range cfg.Disks {
		add("disk "+d.Vdev, checkDisk(d), d.Target+map[bool]string{true: " (ro)", false: " (rw)"}[d.ReadOnly])
	}
	for i, v := range cfg.Vifs {
		var err error
		if berr := hostnet.CheckBridge(v.Bridge); berr != nil {
			err = &Refusal{Check: "network", Rule: "bridge", Msg: fmt.Sprintf("vif %d: %v", i, berr), Err: berr}
		}
		add(fmt.Sprintf("vif %d", i), err, fmt.Sprintf("mac %s on bridge %s", v.MAC, v.Bridge))
	}

	guest, from, warn, err := GuestInterface(cfg, opt.Build)
	if err != nil {
		add("interface", err, "")
		return p, first
	}
	if warn != "" {
		p.Warnings = append(p.Warnings, warn)
	}
	p.Guest, p.Declared = guest.String(), from
	detail, err = p.admit(opt.Build, guest, from, opt.Unchecked)
	add("interface", err, detail)
	return p, first
}

// admit applies abi.Admit to the guest interface declared by from, as
// the hv that will run it (b) will, and records the decision in p. The
// error is the *Refusal; detail is the check's line otherwise. Creation
// and restore decide here and nowhere else.
func (p *Plan) admit(b abi.Build, guest abi.Interface, from string, unchecked bool) (detail string, err error) {
	d := abi.Admit(b, guest)
	p.HV = b.Release.String()
	p.Decision, p.Verdict, p.Rule, p.Reason = d, d.Verdict.String(), d.Rule, d.Reason
	switch {
	case d.Verdict != abi.Refuse:
		p.Admitted = d.Admitted.String()
		p.Compat = d.Verdict == abi.Compat
		return d.Reason + " [declared by " + from + "]", nil
	case unchecked:
		p.Warnings = append(p.Warnings, "--unchecked-interface (test only): the toolstack does not refuse: "+d.Reason)
		return "UNCHECKED (test only): " + d.Reason + " [declared by " + from + "]", nil
	}
	return "", &Refusal{Check: "interface", File: from, Rule: d.Rule, Msg: d.Reason}
}

// CheckKernel checks that path is a bzImage this hv can boot: magic, boot
// protocol >= 2.12 and the 64-bit entry (kformat.ParseSetupHeader), and
// reports the payload compression.
func CheckKernel(path string) (string, error) {
	refuse := func(rule, msg string, err error) error {
		return &Refusal{Check: "kernel", File: path, Rule: rule, Msg: msg, Err: err}
	}
	b, err := hostfile.ReadRegular(path, hostfile.MaxKernel)
	if err != nil {
		return "", fileRefusal("kernel", path, err)
	}
	h, err := kformat.ParseSetupHeader(b)
	switch {
	case errors.Is(err, kformat.ErrBadMagic):
		return "", refuse("bzimage-magic", "not a bzImage: "+err.Error()+"; xeno boots bzImages through their 64-bit entry", err)
	case errors.Is(err, kformat.ErrOldProtocol):
		return "", refuse("boot-protocol", err.Error()+"; the 64-bit entry needs boot protocol >= 2.12", err)
	case errors.Is(err, kformat.ErrNo64BitEntry):
		return "", refuse("64bit-entry", err.Error()+"; xeno enters the kernel in long mode", err)
	case err != nil:
		return "", refuse("bzimage", err.Error(), err)
	}
	comp := kformat.DetectCompression(h.Payload(b))
	detail := fmt.Sprintf("bzImage, boot protocol %s, 64-bit entry, payload %s", kformat.ProtocolString(h.Version), comp)
	if h.KernelVersion != "" {
		detail += ", " + strings.Fields(h.KernelVersion)[0]
	}
	return detail, nil
}

func checkHost(cfg *Config, h Host) error {
	if h.FreeMiB > 0 && cfg.MemoryMiB > h.FreeMiB {
		return &Refusal{Check: "host", Rule: "memory-fits", Msg: fmt.Sprintf("memory = %d MiB but the host has %d MiB available (MemAvailable in /proc/meminfo)", cfg.MemoryMiB, h.FreeMiB)}
	}
	if h.CPUs > 0 && cfg.VCPUs > h.CPUs {
		return &Refusal{Check: "host", Rule: "vcpus-fit", Msg: fmt.Sprintf("vcpus = %d but the host has %d CPUs", cfg.VCPUs, h.CPUs)}
	}
	return nil
}

// checkMemoryLeft refuses a domain whose memory does not fit beside the
// domains already there (checkHost sees one domain alone). MemAvailable
// already counts what their hvs have touched, so each domain still owes
// its memory less its hv's resident size; one being created owes all of
// it. A host that was not read (FreeMiB 0) is not checked.
func checkMemoryLeft(cfg *Config, h Host, doms []*Record) error {
	if h.FreeMiB <= 0 {
		return nil
	}
	var owed int64
	var ids []string
	for _, r := range doms {
		if r.Config == nil {
			continue
		}
		switch {
		case r.HVAlive():
			owed += max(0, r.Config.MemoryMiB-residentMiB(r.HVPid))
		case r.State == StateCreating:
			owed += r.Config.MemoryMiB
		default:
			continue
		}
		ids = append(ids, strconv.Itoa(r.ID))
	}
	left := h.FreeMiB - owed
	if cfg.MemoryMiB <= left {
		return nil
	}
	msg := fmt.Sprintf("memory = %d MiB but the host has %d MiB available (MemAvailable in /proc/meminfo)", cfg.MemoryMiB, h.FreeMiB)
	if len(ids) > 0 {
		noun := "domain"
		if len(ids) > 1 {
			noun = "domains"
		}
		msg = fmt.Sprintf("memory = %d MiB but only %d MiB are left: the host has %d MiB available (MemAvailable in /proc/meminfo, MemTotal %d MiB), less %d MiB that %s %s may still take",
			cfg.MemoryMiB, max(left, 0), h.FreeMiB, h.TotalMiB, owed, noun, strings.Join(ids, ", "))
	}
	return &Refusal{Check: "host", Rule: "memory-fits", Msg: msg}
}

// residentMiB is the resident memory of process pid, 0 if unknown: the
// domain then owes its whole memory.
func residentMiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize()) >> 20
}

// fileRefusal is the refusal for a hostfile error about path, with the
// rule it broke.
func fileRefusal(check, path string, err error) *Refusal {
	rule := "readable"
	switch {
	case errors.Is(err, hostfile.ErrTooLarge):
		rule = "size"
	case errors.Is(err, hostfile.ErrNotDisk), check == "disk" && errors.Is(err, hostfile.ErrPseudo):
		rule = "disk-type"
	case errors.Is(err, hostfile.ErrNotRegular), errors.Is(err, hostfile.ErrPseudo):
		rule = "regular-file"
	}
	// The refusal names the file already.
	msg := strings.TrimPrefix(err.Error(), path+": ")
	return &Refusal{Check: check, File: path, Rule: rule, Msg: msg, Err: err}
}

// RamdiskLimit is the largest ramdisk a domain of cfg can load: it must
// fit in the guest's RAM, and under hostfile.MaxInitrd. The hv applies
// the same limit.
func RamdiskLimit(cfg *Config) int64 {
	return min(cfg.MemoryMiB<<20, hostfile.MaxInitrd)
}

// checkRamdisk refuses a ramdisk that is no regular file or is too big,
// from its size: nothing of it is read.
func checkRamdisk(cfg *Config) error {
	f, _, err := hostfile.OpenRegular(cfg.Ramdisk, RamdiskLimit(cfg))
	if err != nil {
		return fileRefusal("ramdisk", cfg.Ramdisk, err)
	}
	f.Close()
	return nil
}

// checkDisk refuses a disk that cannot be opened as the domain will open
// it, or that is neither a regular file nor a block device.
func checkDisk(d Disk) error {
	f, err := hostfile.OpenDisk(d.Target, d.ReadOnly)
	if err != nil {
		return fileRefusal("disk", d.Target, err)
	}
	f.Close()
	return nil
}

// GuestInterface finds the interface the guest was built for: the
// config's interface=, else the builder's manifest beside the kernel or
// ramdisk (NAME.manifest.toml), else /etc/xeno/manifest.toml inside the
// initramfs. A guest that declares nothing is admitted as the hv's native
// interface, with a warning (docs/xl.md says why).
func GuestInterface(cfg *Config, b abi.Build) (in abi.Interface, from, warning string, err error) {
	if cfg.Interface != "" {
		in, err := abi.ParseInterface(cfg.Interface)
		if err != nil {
			return in, "", "", &Refusal{Check: "interface", File: cfg.Source, Rule: "syntax", Msg: err.Error(), Err: err}
		}
		src := cfg.InterfaceAt
		if src == "" {
			src = cfg.Source
		}
		if src == "" {
			src = "config"
		}
		return in, src + " (interface=)", "", nil
	}
	for _, f := range []string{cfg.Kernel, cfg.Ramdisk} {
		if f == "" {
			continue
		}
		for _, p := range manifest.Beside(f) {
			m, err := manifest.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			in, err := manifestInterface(p, m, err)
			return in, p, "", err
		}
	}
	if cfg.Ramdisk != "" {
		data, err := images.ReadInitramfsFile(cfg.Ramdisk, manifest.InitramfsPath, manifest.MaxSize)
		if err != nil {
			return in, "", "", &Refusal{Check: "interface", File: cfg.Ramdisk, Rule: "initramfs", Msg: err.Error(), Err: err}
		}
		if data != nil {
			where := cfg.Ramdisk + ":" + manifest.InitramfsPath
			m, err := manifest.Parse(data)
			in, err := manifestInterface(where, m, err)
			return in, where, "", err
		}
	}
	in = b.Release.Interface()
	if in.Dev {
		in.BuildID = b.BuildID
	}
	return in, "nobody (assumed native)", fmt.Sprintf("the guest declares no interface (no interface= in the config, no manifest beside %s, none in its initramfs): admitted as this hv's native %s", cfg.Kernel, in.Short()), nil
}

// manifestInterface is the guest interface of a builder manifest that
// was read with err, or the refusal that names where it was.
func manifestInterface(where string, m *manifest.Manifest, err error) (abi.Interface, error) {
	var in abi.Interface
	if err == nil {
		if in, err = m.GuestInterface(); err == nil {
			return in, nil
		}
	}
	return in, &Refusal{Check: "interface", File: where, Rule: "manifest", Msg: err.Error(), Err: err}
}
