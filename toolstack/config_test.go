package toolstack

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/toolstack/xlcfg"
)

func resolve(t *testing.T, src string, overrides ...string) (*Config, []Warning, error) {
	t.Helper()
	dir := t.TempDir()
	c, err := xlcfg.Parse(filepath.Join(dir, "d.cfg"), []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, o := range overrides {
		if err := c.Parse("command line", []byte(o)); err != nil {
			t.Fatalf("override: %v", err)
		}
	}
	return Resolve(c, ResolveOptions{Dir: dir, CommandLine: "command line",
		LookupKernel: func(rel string) (string, error) {
			if rel == "6.1.0-56-cloud-amd64" {
				return "/store/" + rel + "/vmlinuz", nil
			}
			return "", errors.New("not imported")
		}})
}

func mustResolve(t *testing.T, src string, overrides ...string) (*Config, []Warning) {
	t.Helper()
	cfg, w, err := resolve(t, src, overrides...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, w
}

func TestDefaults(t *testing.T) {
	cfg, w := mustResolve(t, `name = "g"`+"\nkernel = \"k.bin\"\n")
	if len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
	if cfg.Type != "pvh" || cfg.MemoryMiB != DefaultMemoryMiB || cfg.MaxMemMiB != DefaultMemoryMiB || cfg.VCPUs != 1 {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.OnPoweroff != ActionDestroy || cfg.OnReboot != ActionRestart || cfg.OnCrash != ActionDestroy {
		t.Errorf("xl's default actions: %+v", cfg)
	}
	if !uuidRE.MatchString(cfg.UUID) {
		t.Errorf("uuid %q", cfg.UUID)
	}
	if !filepath.IsAbs(cfg.Kernel) || filepath.Base(cfg.Kernel) != "k.bin" {
		t.Errorf("kernel %q not resolved against the config's directory", cfg.Kernel)
	}
}

func TestCmdlinePrecedence(t *testing.T) {
	base := "name = \"g\"\nkernel = \"/k\"\n"
	for _, tc := range []struct {
		src, want string
		warn      bool
	}{
		{`extra = "quiet"`, "quiet", false},
		{`root = "/dev/vda"`, "root=/dev/vda", false},
		{"root = \"/dev/vda ro\"\nextra = \"console=ttyS0\"", "root=/dev/vda ro console=ttyS0", false},
		{"root = \"/dev/vda\"\nextra = \"x\"\ncmdline = \"only this\"", "only this", true},
		{`cmdline = "c"`, "c", false},
		{"", "", false},
	} {
		cfg, w := mustResolve(t, base+tc.src)
		if cfg.Cmdline != tc.want {
			t.Errorf("%q: cmdline %q, want %q", tc.src, cfg.Cmdline, tc.want)
		}
		if got := len(w) == 1 && strings.Contains(w[0].Msg, "in favour of cmdline"); got != tc.warn {
			t.Errorf("%q: warnings %v", tc.src, w)
		}
	}
}

func TestDiskspec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Disk
	}{
		{"disk.img", Disk{Target: "disk.img", Format: "raw"}},
		{"disk.img,raw,xvdb,ro", Disk{Target: "disk.img", Format: "raw", Vdev: "xvdb", ReadOnly: true}},
		{"disk.img,,xvdc,r", Disk{Target: "disk.img", Format: "raw", Vdev: "xvdc", ReadOnly: true}},
		{"format=raw, vdev=xvda, access=rw, target=/a,b.img", Disk{Target: "/a,b.img", Format: "raw", Vdev: "xvda"}},
		{"vdev=vda,access=ro,target=x", Disk{Target: "x", Format: "raw", Vdev: "vda", ReadOnly: true}},
	} {
		got, err := ParseDiskspec(tc.spec)
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.spec, got, tc.want)
		}
	}
	for spec, want := range map[string]string{
		"disk.qcow2,qcow2,xvda":      "raw images only",
		",raw,xvda":                  "no target",
		"target=":                    "no target",
		"a,raw,xvda,rx":              "want ro or rw",
		"a,raw,nvme0":                "vdev",
		"backendtype=qdisk,target=a": "no disk backends",
		"a,raw,xvda,rw,cdrom":        "CD-ROM",
		"colour=red,target=a":        "unknown key",
	} {
		if _, err := ParseDiskspec(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", spec, err, want)
		}
	}
}

func TestDisksInConfig(t *testing.T) {
	cfg, _ := mustResolve(t, "name=\"g\"\nkernel=\"/k\"\ndisk = [ 'a.img', 'vdev=xvdc,target=/abs/b.img' ]")
	if len(cfg.Disks) != 2 || cfg.Disks[0].Vdev != "xvda" || !filepath.IsAbs(cfg.Disks[0].Target) || cfg.Disks[1].Target != "/abs/b.img" {
		t.Errorf("disks %+v", cfg.Disks)
	}
	_, _, err := resolve(t, "name=\"g\"\nkernel=\"/k\"\ndisk = [ 'a.img,raw,xvda', 'b.img,raw,xvda' ]")
	checkPosErr(t, err, 3, 28, "used twice")
}

func checkPosErr(t *testing.T, err error, line, col int, text string) {
	t.Helper()
	var pe *xlcfg.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not positioned", err)
	}
	if pe.Pos.Line != line || pe.Pos.Col != col || !strings.Contains(pe.Msg, text) {
		t.Errorf("got %v, want %d:%d %q", err, line, col, text)
	}
	if !strings.HasSuffix(pe.Pos.File, ".cfg") && pe.Pos.File != "command line" {
		t.Errorf("error names %q, not the file", pe.Pos.File)
	}
}

func TestRefusedValues(t *testing.T) {
	base := "name = \"g\"\nkernel = \"/k\"\n"
	for _, tc := range []struct {
		src  string
		col  int
		text string
	}{
		{`type = "pv"`, 8, "no PV ABI"},
		{`type = "hvm"`, 8, "no firmware"},
		{`builder = "hvm"`, 11, "no firmware"},
		{`type = "pvhx"`, 8, `want "pvh"`},
		{`memory = 0`, 10, "out of range"},
		{`memory = "lots"`, 10, "not a number"},
		{`vcpus = [1]`, 9, "not a list"},
		{`vcpus = 65`, 9, "out of range [1, 64]"}, // the hv's abi.MaxVCPUs
		{`on_crash = "coredump-destroy"`, 12, "core dumps"},
		{`on_reboot = "rename-restart"`, 13, "renamed"},
		{`on_poweroff = "explode"`, 15, "want"},
		{`uuid = "nope"`, 8, "uuid"},
		{`interface = "1.x"`, 13, "interface"},
		{`interface = "1.2@abc"`, 13, "interface"},
		{`disk = "a.img"`, 8, "list of diskspecs"},
		{`kernel = "9.9.9-none"`, 10, "not in the kernel store"},
	} {
		_, _, err := resolve(t, base+tc.src)
		if err == nil {
			t.Errorf("%s: accepted", tc.src)
			continue
		}
		checkPosErr(t, err, 3, tc.col, tc.text)
	}
	_, _, err := resolve(t, "name = \"g\"\nkernel = \"/k\"\nmemory = 256\nmaxmem = 128\n")
	checkPosErr(t, err, 4, 10, "less than memory")
	_, _, err = resolve(t, "kernel = \"/k\"\n")
	if err == nil || !strings.Contains(err.Error(), "name is required") || !strings.Contains(err.Error(), "d.cfg") {
		t.Errorf("missing name: %v", err)
	}
	_, _, err = resolve(t, "name = \"123\"\nkernel = \"/k\"\n")
	checkPosErr(t, err, 1, 8, "not all digits")
}

func TestWarnings(t *testing.T) {
	_, w := mustResolve(t, "name = \"g\"\nkernel = \"/k\"\nfrobnicate = 1\nvfb = [ 'vnc=1' ]\nmemory = 64\nmaxmem = 128\n")
	var msgs []string
	for _, x := range w {
		msgs = append(msgs, x.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{`d.cfg:3: warning: unknown key "frobnicate"`, "d.cfg:4: warning: vfb is ignored", "d.cfg:6: warning: maxmem = 128 > memory = 64"} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings %q lack %q", all, want)
		}
	}
}

// Overrides from xl create's command line are applied after the file, and
// their relative paths resolve against the working directory.
func TestOverrides(t *testing.T) {
	cfg, _ := mustResolve(t, "name = \"g\"\nkernel = \"/k\"\nmemory = 64\nextra = \"a\"\n", "memory=256", `extra+=" b"`, `ramdisk="r.img"`)
	wd, _ := os.Getwd()
	if cfg.MemoryMiB != 256 || cfg.Cmdline != "a b" || cfg.Ramdisk != filepath.Join(wd, "r.img") {
		t.Errorf("overrides not applied: %+v", cfg)
	}
	_, _, err := resolve(t, "name = \"g\"\nkernel = \"/k\"\n", "type=\"hvm\"")
	var pe *xlcfg.Error
	if !errors.As(err, &pe) || pe.Pos.File != "command line" {
		t.Errorf("override error %v does not name the command line", err)
	}
}

func TestKernelStore(t *testing.T) {
	cfg, _ := mustResolve(t, "name = \"g\"\nkernel = \"6.1.0-56-cloud-amd64\"\n")
	if cfg.Kernel != "/store/6.1.0-56-cloud-amd64/vmlinuz" || cfg.KernelFrom != "6.1.0-56-cloud-amd64" {
		t.Errorf("store lookup: %+v", cfg)
	}
}

func FuzzDiskspec(f *testing.F) {
	for _, s := range []string{"disk.img", "a,raw,xvda,ro", "format=raw, vdev=xvda, access=rw, target=/a,b", ",,,", "target=", "a,qcow2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		d, err := ParseDiskspec(spec)
		if err != nil {
			return
		}
		if d.Target == "" || d.Format != "raw" || (d.Vdev != "" && !vdevRE.MatchString(d.Vdev)) {
			t.Fatalf("%q accepted as %+v", spec, d)
		}
	})
}
