package toolstack

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/toolstack/xlcfg"
)

// Action is what the monitor does when a domain stops, as xl.cfg's
// on_poweroff / on_reboot / on_crash.
type Action string

const (
	ActionDestroy  Action = "destroy"
	ActionRestart  Action = "restart"
	ActionPreserve Action = "preserve"
)

// Disk is one parsed xl diskspec.
type Disk struct {
	Target   string `json:"target"`
	Format   string `json:"format"`
	Vdev     string `json:"vdev"`
	ReadOnly bool   `json:"readonly"`
}

// Config is a domain's resolved configuration: every default applied,
// every path absolute. It is what the record stores and dry-run prints.
type Config struct {
	Source     string `json:"source,omitempty"` // the xl.cfg it came from
	Name       string `json:"name"`
	UUID       string `json:"uuid"`
	Type       string `json:"type"`
	MemoryMiB  int64  `json:"memory_mib"`
	MaxMemMiB  int64  `json:"maxmem_mib"`
	VCPUs      int    `json:"vcpus"`
	MaxVCPUs   int    `json:"maxvcpus"`
	Kernel     string `json:"kernel"`
	KernelFrom string `json:"kernel_release,omitempty"` // the store release it was looked up as
	Ramdisk    string `json:"ramdisk,omitempty"`
	Cmdline    string `json:"cmdline"`
	Disks      []Disk `json:"disks,omitempty"`
	Vifs       []Vif  `json:"vifs,omitempty"`
	OnPoweroff Action `json:"on_poweroff"`
	OnReboot   Action `json:"on_reboot"`
	OnCrash    Action `json:"on_crash"`
	// Interface is the config's `interface=` key, empty if absent; the
	// check resolves the effective one (manifest, initramfs).
	Interface   string `json:"interface,omitempty"`
	InterfaceAt string `json:"interface_at,omitempty"` // FILE:LINE of interface=
}

// Warning is a problem that does not stop creation, with its place.
type Warning struct {
	Pos xlcfg.Pos
	Msg string
}

func (w Warning) String() string {
	return fmt.Sprintf("%s:%d: warning: %s", w.Pos.File, w.Pos.Line, w.Msg)
}

// Defaults, documented in docs/xl.md.
const (
	DefaultMemoryMiB = 128
	DefaultVCPUs     = 1
)

// ResolveOptions says how to resolve what the config names.
type ResolveOptions struct {
	// Dir is where relative paths from the config file resolve; the
	// config file's directory. Settings given on the command line
	// (xl create KEY=VALUE) resolve against the working directory.
	Dir string
	// CommandLine is the source name that override settings carry.
	CommandLine string
	// LookupKernel turns a kernel release ("6.1.0-56-cloud-amd64") into
	// the path of its bzImage in the kernel store. Nil: only paths work.
	LookupKernel func(release string) (string, error)
}

// ignored are xl.cfg keys that xeno knows but does not implement; they
// warn with the reason instead of the generic "unknown key".
var ignored = map[string]string{
	"vfb":                  "xeno has no framebuffer",
	"vkb":                  "xeno has no virtual keyboard",
	"pci":                  "xeno has no PCI passthrough",
	"usb":                  "xeno has no USB",
	"serial":               "the console is always the 16550 UART on COM1",
	"bootloader":           "xeno boots the kernel directly; there is no pygrub",
	"cpus":                 "xeno does not pin vCPUs",
	"cpu_weight":           "xeno has no scheduler of its own; vCPUs are Linux threads",
	"localtime":            "the guest clock is kvmclock, in UTC",
	"device_model_version": "xeno has no device model",
	"vnuma":                "xeno presents one NUMA node",
}

var known = map[string]bool{
	"name": true, "type": true, "builder": true, "memory": true, "maxmem": true,
	"vcpus": true, "maxvcpus": true, "kernel": true, "ramdisk": true,
	"cmdline": true, "extra": true, "root": true, "disk": true,
	"on_poweroff": true, "on_reboot": true, "on_crash": true,
	"on_watchdog": true, "on_soft_reset": true,
	"uuid": true, "interface": true, "vif": true,
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.:+-]{1,64}$`)
var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Resolve turns parsed settings into a Config. Errors are *xlcfg.Error
// with the position of the offending value; unknown keys are warnings.
func Resolve(c *xlcfg.Config, opt ResolveOptions) (*Config, []Warning, error) {
	r := &resolver{c: c, opt: opt}
	cfg := &Config{}
	for _, k := range c.Keys() {
		s := c.Get(k)
		if why, ok := ignored[k]; ok {
			r.warn(s.Pos, "%s is ignored: %s", k, why)
		} else if !known[k] {
			r.warn(s.Pos, "unknown key %q is ignored", k)
		}
	}

	var err error
	name := c.Get("name")
	if name == nil {
		return nil, r.warns, fmt.Errorf("%s: name is required (e.g. name = \"guest1\")", r.sourceName())
	}
	if cfg.Name, err = r.str("name"); err != nil {
		return nil, r.warns, err
	}
	if !nameRE.MatchString(cfg.Name) || isAllDigits(cfg.Name) {
		return nil, r.warns, xlcfg.Errorf(name.Value.Pos, "name %q: want 1-64 of A-Z a-z 0-9 _ . : + -, not all digits (a number is a domain ID)", cfg.Name)
	}

	if cfg.Type, err = r.domType(); err != nil {
		return nil, r.warns, err
	}

	if cfg.MemoryMiB, err = r.num("memory", DefaultMemoryMiB, abi.MinMemoryMiB, abi.MaxMemoryMiB); err != nil {
		return nil, r.warns, err
	}
	if cfg.MaxMemMiB, err = r.num("maxmem", cfg.MemoryMiB, abi.MinMemoryMiB, abi.MaxMemoryMiB); err != nil {
		return nil, r.warns, err
	}
	if s := c.Get("maxmem"); s != nil {
		if cfg.MaxMemMiB < cfg.MemoryMiB {
			return nil, r.warns, xlcfg.Errorf(s.Value.Pos, "maxmem = %d is less than memory = %d", cfg.MaxMemMiB, cfg.MemoryMiB)
		}
		if cfg.MaxMemMiB > cfg.MemoryMiB {
			r.warn(s.Pos, "maxmem = %d > memory = %d: xeno has no balloon driver, the guest gets memory = %d MiB and never more", cfg.MaxMemMiB, cfg.MemoryMiB, cfg.MemoryMiB)
		}
	}
	v, err := r.num("vcpus", DefaultVCPUs, 1, abi.MaxVCPUs)
	if err != nil {
		return nil, r.warns, err
	}
	cfg.VCPUs = int(v)
	if v, err = r.num("maxvcpus", int64(cfg.VCPUs), 1, abi.MaxVCPUs); err != nil {
		return nil, r.warns, err
	}
	cfg.MaxVCPUs = int(v)
	if s := c.Get("maxvcpus"); s != nil {
		if cfg.MaxVCPUs < cfg.VCPUs {
			return nil, r.warns, xlcfg.Errorf(s.Value.Pos, "maxvcpus = %d is less than vcpus = %d", cfg.MaxVCPUs, cfg.VCPUs)
		}
		if cfg.MaxVCPUs > cfg.VCPUs {
			r.warn(s.Pos, "maxvcpus = %d > vcpus = %d: xeno has no vCPU hotplug, the guest gets %d vCPUs", cfg.MaxVCPUs, cfg.VCPUs, cfg.VCPUs)
			cfg.MaxVCPUs = cfg.VCPUs
		}
	}

	if err := r.kernel(cfg); err != nil {
		return nil, r.warns, err
	}
	if s := c.Get("ramdisk"); s != nil {
		p, err := r.str("ramdisk")
		if err != nil {
			return nil, r.warns, err
		}
		cfg.Ramdisk = r.path(s, p)
	}
	if cfg.Cmdline, err = r.cmdline(); err != nil {
		return nil, r.warns, err
	}
	if cfg.Disks, err = r.disks(); err != nil {
		return nil, r.warns, err
	}
	for _, a := range []struct {
		key  string
		def  Action
		dest *Action
	}{
		{"on_poweroff", ActionDestroy, &cfg.OnPoweroff},
		{"on_reboot", ActionRestart, &cfg.OnReboot},
		{"on_crash", ActionDestroy, &cfg.OnCrash},
	} {
		if *a.dest, err = r.action(a.key, a.def); err != nil {
			return nil, r.warns, err
		}
	}
	for _, k := range []string{"on_watchdog", "on_soft_reset"} {
		if s := c.Get(k); s != nil {
			r.warn(s.Pos, "%s is ignored: xeno has no watchdog or soft reset", k)
		}
	}
	if s := c.Get("uuid"); s != nil {
		u, err := r.str("uuid")
		if err != nil {
			return nil, r.warns, err
		}
		if !uuidRE.MatchString(u) {
			return nil, r.warns, xlcfg.Errorf(s.Value.Pos, "uuid %q: want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in hex", u)
		}
		cfg.UUID = strings.ToLower(u)
	} else {
		cfg.UUID = NewUUID()
	}
	if cfg.Vifs, err = r.vifs(cfg.UUID, len(cfg.Disks)); err != nil {
		return nil, r.warns, err
	}
	for i, v := range cfg.Vifs {
		if v.IP == "" || !hasIPParam(cfg.Cmdline) {
			continue
		}
		r.warn(r.c.Get("vif").Value.Items[i].Pos, "vif %d has ip= and the command line has its own ip= too: the guest gets both, and xeno-init applies them in order", i)
		break
	}
	if s := c.Get("interface"); s != nil {
		in, err := r.str("interface")
		if err != nil {
			return nil, r.warns, err
		}
		if _, err := abi.ParseInterface(in); err != nil {
			return nil, r.warns, xlcfg.Errorf(s.Value.Pos, "interface %q: want MAJOR.MINOR or MAJOR.MINOR-dev@BUILDID (%v)", in, err)
		}
		cfg.Interface = in
		cfg.InterfaceAt = fmt.Sprintf("%s:%d", s.Pos.File, s.Pos.Line)
	}
	return cfg, r.warns, nil
}

// NewUUID returns a random (version 4) UUID, as xl makes one per domain.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

type resolver struct {
	c     *xlcfg.Config
	opt   ResolveOptions
	warns []Warning
}

func (r *resolver) warn(pos xlcfg.Pos, format string, args ...any) {
	r.warns = append(r.warns, Warning{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (r *resolver) sourceName() string {
	for _, k := range r.c.Keys() {
		return r.c.Get(k).Pos.File
	}
	return "config"
}

// str reads a string setting; a number is accepted as its text, as
// libxlu stores every atom as a string.
func (r *resolver) str(key string) (string, error) {
	s := r.c.Get(key)
	if s.Value.Kind == xlcfg.List {
		return "", xlcfg.Errorf(s.Value.Pos, "%s must be a single value, not a list", key)
	}
	return s.Value.Text, nil
}

// num reads an integer setting in [lo, hi]; a quoted number is accepted
// as xl's strtol on the string does.
func (r *resolver) num(key string, def, lo, hi int64) (int64, error) {
	s := r.c.Get(key)
	if s == nil {
		return def, nil
	}
	v := s.Value
	var n int64
	switch v.Kind {
	case xlcfg.Number:
		n = v.Int
	case xlcfg.String:
		p, err := xlcfg.Parse(v.Pos.File, []byte("n = "+v.Text))
		if err != nil || p.Get("n").Value.Kind != xlcfg.Number {
			return 0, xlcfg.Errorf(v.Pos, "%s = %q is not a number", key, v.Text)
		}
		n = p.Get("n").Value.Int
	default:
		return 0, xlcfg.Errorf(v.Pos, "%s must be a number, not a list", key)
	}
	if n < lo || n > hi {
		return 0, xlcfg.Errorf(v.Pos, "%s = %d is out of range [%d, %d]", key, n, lo, hi)
	}
	return n, nil
}

func (r *resolver) domType() (string, error) {
	s := r.c.Get("type")
	key := "type"
	if s == nil {
		// xl's older spelling: builder = "hvm" | "generic".
		if s = r.c.Get("builder"); s == nil {
			return "pvh", nil
		}
		key = "builder"
	}
	t, err := r.str(key)
	if err != nil {
		return "", err
	}
	switch t {
	case "pvh":
		return "pvh", nil
	case "pv", "generic", "linux":
		return "", xlcfg.Errorf(s.Value.Pos, "%s = %q: xeno has no PV ABI (no hypercall page, grant tables or PV MMU); use type = \"pvh\", which boots the kernel directly", key, t)
	case "hvm":
		return "", xlcfg.Errorf(s.Value.Pos, "%s = %q: xeno has no firmware and no device-model emulation; use type = \"pvh\", which boots the kernel directly", key, t)
	}
	return "", xlcfg.Errorf(s.Value.Pos, "%s = %q: want \"pvh\"", key, t)
}

// path makes p absolute: against the config file's directory if the
// setting came from the file, the working directory if from the command
// line.
func (r *resolver) path(s *xlcfg.Setting, p string) string {
	return r.pathFrom(s.Pos.File, p)
}

func (r *resolver) pathFrom(source, p string) string {
	if filepath.IsAbs(p) || p == "" {
		return filepath.Clean(p)
	}
	base := r.opt.Dir
	if source == r.opt.CommandLine || base == "" {
		if wd, err := os.Getwd(); err == nil {
			base = wd
		}
	}
	return filepath.Join(base, p)
}

var releaseRE = regexp.MustCompile(`^[0-9]+\.[0-9]+[0-9A-Za-z.+~-]*$`)

func (r *resolver) kernel(cfg *Config) error {
	s := r.c.Get("kernel")
	if s == nil {
		return fmt.Errorf("%s: kernel is required (a bzImage path, or a release in the kernel store such as \"6.1.0-56-cloud-amd64\")", r.sourceName())
	}
	k, err := r.str("kernel")
	if err != nil {
		return err
	}
	if k == "" {
		return xlcfg.Errorf(s.Value.Pos, "kernel is empty")
	}
	p := r.path(s, k)
	// A bare release names a kernel in the store, unless a file of that
	// name exists next to the config: the file wins, as a path would.
	if !strings.Contains(k, "/") && releaseRE.MatchString(k) {
		if _, err := os.Stat(p); err != nil {
			if r.opt.LookupKernel == nil {
				return xlcfg.Errorf(s.Value.Pos, "kernel %q: no such file, and no kernel store to look the release up in", k)
			}
			sp, err := r.opt.LookupKernel(k)
			if err != nil {
				return xlcfg.Errorf(s.Value.Pos, "kernel %q: no such file, and not in the kernel store: %v (import it with `xeno kernel import`)", k, err)
			}
			cfg.Kernel, cfg.KernelFrom = sp, k
			return nil
		}
	}
	cfg.Kernel = p
	return nil
}

// cmdline applies xl's precedence: cmdline wins over root and extra (with
// a warning if they are set too); otherwise "root=ROOT EXTRA".
func (r *resolver) cmdline() (string, error) {
	get := func(k string) (string, *xlcfg.Setting, error) {
		s := r.c.Get(k)
		if s == nil {
			return "", nil, nil
		}
		v, err := r.str(k)
		return v, s, err
	}
	cmd, cs, err := get("cmdline")
	if err != nil {
		return "", err
	}
	root, rs, err := get("root")
	if err != nil {
		return "", err
	}
	extra, es, err := get("extra")
	if err != nil {
		return "", err
	}
	if cs != nil {
		if rs != nil || es != nil {
			r.warn(cs.Pos, "ignoring root= and extra= in favour of cmdline=")
		}
		return cmd, nil
	}
	switch {
	case rs != nil && es != nil:
		return "root=" + root + " " + extra, nil
	case rs != nil:
		return "root=" + root, nil
	}
	return extra, nil
}

func (r *resolver) disks() ([]Disk, error) {
	s := r.c.Get("disk")
	if s == nil {
		return nil, nil
	}
	if s.Value.Kind != xlcfg.List {
		return nil, xlcfg.Errorf(s.Value.Pos, "disk must be a list of diskspecs, e.g. disk = [ \"target=disk.img,vdev=xvda\" ]")
	}
	var out []Disk
	seen := map[string]bool{}
	for i, it := range s.Value.Items {
		if it.Kind == xlcfg.List {
			return nil, xlcfg.Errorf(it.Pos, "disk entry %d is a list; want a diskspec string", i+1)
		}
		d, err := ParseDiskspec(it.Text)
		if err != nil {
			return nil, xlcfg.Errorf(it.Pos, "disk %q: %v", it.Text, err)
		}
		if d.Vdev == "" {
			d.Vdev = fmt.Sprintf("xvd%c", 'a'+len(out)%26)
		}
		if seen[d.Vdev] {
			return nil, xlcfg.Errorf(it.Pos, "disk %q: vdev %s is used twice", it.Text, d.Vdev)
		}
		seen[d.Vdev] = true
		d.Target = r.pathFrom(it.Pos.File, d.Target)
		out = append(out, d)
	}
	return out, nil
}

// ParseDiskspec reads one xl diskspec (xl-disk-configuration(5)): the
// positional form TARGET,FORMAT,VDEV,ACCESS (any may be empty) and the
// KEY=VALUE form, mixed. `target=` swallows the rest of the spec, commas
// included, as in xl. Only raw images are supported.
func ParseDiskspec(spec string) (Disk, error) {
	d := Disk{Format: "raw"}
	var target string
	haveTarget := false
	pos := 0
	rest := spec
	for {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		part = strings.TrimSpace(part)
		key, val, isKV := strings.Cut(part, "=")
		if isKV {
			switch key {
			case "target":
				// The rest of the spec, commas included, is the target.
				target = val
				if rest != "" {
					target += "," + rest
				}
				rest = ""
				haveTarget = true
			case "format":
				d.Format = val
			case "vdev":
				d.Vdev = val
			case "access":
				if err := setAccess(&d, val); err != nil {
					return d, err
				}
			case "devtype":
				if val != "disk" {
					return d, fmt.Errorf("devtype=%s: xeno has only disks", val)
				}
			case "backendtype", "backend", "script":
				return d, fmt.Errorf("%s=: xeno has no disk backends; the hv serves raw images itself", key)
			default:
				return d, fmt.Errorf("unknown key %q (want target=, format=, vdev=, access=)", key)
			}
		} else {
			switch pos {
			case 0:
				if part != "" {
					target, haveTarget = part, true
				}
			case 1:
				if part != "" {
					d.Format = part
				}
			case 2:
				d.Vdev = part
			case 3:
				if part != "" {
					if err := setAccess(&d, part); err != nil {
						return d, err
					}
				}
			default:
				if part == "cdrom" || part == "devtype=cdrom" {
					return d, fmt.Errorf("xeno has no CD-ROM devices")
				}
				return d, fmt.Errorf("too many positional parameters (want TARGET,FORMAT,VDEV,ACCESS)")
			}
			pos++
		}
		if rest == "" {
			break
		}
	}
	if !haveTarget || target == "" {
		return d, fmt.Errorf("no target (the image file)")
	}
	d.Target = target
	switch d.Format {
	case "raw":
	case "qcow", "qcow2", "vhd", "qed":
		return d, fmt.Errorf("format %s is not supported: xeno serves raw images only (convert with qemu-img convert -O raw)", d.Format)
	default:
		return d, fmt.Errorf("unknown format %q (xeno serves raw images only)", d.Format)
	}
	if d.Vdev != "" && !vdevRE.MatchString(d.Vdev) {
		return d, fmt.Errorf("vdev %q: want a name such as xvda, vda, sda or hda", d.Vdev)
	}
	return d, nil
}

var vdevRE = regexp.MustCompile(`^(xvd|vd|sd|hd)[a-z]{1,2}$`)

func setAccess(d *Disk, v string) error {
	switch v {
	case "ro", "r":
		d.ReadOnly = true
	case "rw", "w":
		d.ReadOnly = false
	default:
		return fmt.Errorf("access=%s: want ro or rw", v)
	}
	return nil
}

// vifs resolves vif = [ ... ]: each spec parsed, then the defaults (the
// bridge, a MAC derived from the domain's UUID) applied. ndisks is how
// many of the hv's virtio slots the disks take.
func (r *resolver) vifs(uuid string, ndisks int) ([]Vif, error) {
	s := r.c.Get("vif")
	if s == nil {
		return nil, nil
	}
	if s.Value.Kind != xlcfg.List {
		return nil, xlcfg.Errorf(s.Value.Pos, "%v", errVifList)
	}
	if n := ndisks + len(s.Value.Items); n > maxVirtio {
		return nil, xlcfg.Errorf(s.Value.Pos, "%d disks and %d vifs: the hv has %d virtio-mmio slots for them all", ndisks, len(s.Value.Items), maxVirtio)
	}
	var out []Vif
	macs, names := map[string]int{}, map[string]int{}
	for i, it := range s.Value.Items {
		if it.Kind == xlcfg.List {
			return nil, xlcfg.Errorf(it.Pos, "vif entry %d is a list; want a vifspec string", i+1)
		}
		v, err := ParseVifspec(it.Text)
		if err != nil {
			return nil, xlcfg.Errorf(it.Pos, "vif %d %q: %v", i, it.Text, err)
		}
		if v.Bridge == "" {
			v.Bridge = DefaultBridge
		}
		if v.MAC == "" {
			v.MAC, v.MACAuto = DeriveMAC(uuid, i), true
		}
		if j, dup := macs[v.MAC]; dup {
			return nil, xlcfg.Errorf(it.Pos, "vif %d %q: mac %s is vif %d's too", i, it.Text, v.MAC, j)
		}
		macs[v.MAC] = i
		if v.Vifname != "" {
			if j, dup := names[v.Vifname]; dup {
				return nil, xlcfg.Errorf(it.Pos, "vif %d %q: vifname %s is vif %d's too", i, it.Text, v.Vifname, j)
			}
			names[v.Vifname] = i
		}
		out = append(out, v)
	}
	return out, nil
}

func hasIPParam(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if strings.HasPrefix(f, "ip=") {
			return true
		}
	}
	return false
}

// KernelCmdline is the command line the guest boots with: Cmdline, then
// an ip= parameter for each vif with an address (Vif.IPParam).
func (c *Config) KernelCmdline() string {
	parts := []string{}
	if c.Cmdline != "" {
		parts = append(parts, c.Cmdline)
	}
	for i, v := range c.Vifs {
		if p := v.IPParam(i); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

func (r *resolver) action(key string, def Action) (Action, error) {
	s := r.c.Get(key)
	if s == nil {
		return def, nil
	}
	v, err := r.str(key)
	if err != nil {
		return "", err
	}
	switch Action(v) {
	case ActionDestroy, ActionRestart, ActionPreserve:
		return Action(v), nil
	case "rename-restart":
		return "", xlcfg.Errorf(s.Value.Pos, "%s = %q: xeno does not keep a renamed copy of a stopped domain; use \"restart\", or \"preserve\" to keep it for inspection", key, v)
	case "coredump-destroy", "coredump-restart":
		return "", xlcfg.Errorf(s.Value.Pos, "%s = %q: xeno cannot write guest core dumps; use \"destroy\", \"restart\" or \"preserve\"", key, v)
	case "soft-reset":
		return "", xlcfg.Errorf(s.Value.Pos, "%s = %q: xeno has no soft reset; use \"restart\"", key, v)
	}
	return "", xlcfg.Errorf(s.Value.Pos, "%s = %q: want \"destroy\", \"restart\" or \"preserve\"", key, v)
}
