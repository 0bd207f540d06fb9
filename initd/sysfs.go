package initd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SysHypervisor is what the xeno guest kernel shows in /sys/hypervisor
// (docs/abi.md): the running hv release, the interface the domain was
// admitted as, and the interface the kernel was built for.
type SysHypervisor struct {
	Release        string // "1.2.0" or "1.3.0-dev", from version/{major,minor,extra}
	BuildID        string
	Admitted       string // xeno/interface, "1.2"
	Compat         bool
	GuestInterface string // xeno/guest_interface: what the kernel is built for
}

// ReadSysHypervisor reads root/sys/hypervisor. ok is false when it is not
// a xeno hypervisor's (another kernel, or another hypervisor's type).
func ReadSysHypervisor(root string) (s SysHypervisor, ok bool, err error) {
	dir := filepath.Join(root, "sys", "hypervisor")
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if len(b) > 256 {
			return "", fmt.Errorf("%s: %d bytes", name, len(b))
		}
		return strings.TrimSpace(string(b)), err
	}
	typ, err := read("type")
	if err != nil || typ != "xeno" {
		return s, false, nil
	}
	var v [3]string
	for i, f := range []string{"version/major", "version/minor", "version/extra"} {
		if v[i], err = read(f); err != nil {
			return s, true, fmt.Errorf("/sys/hypervisor: %w", err)
		}
	}
	s.Release = v[0] + "." + v[1] + v[2]
	var compat string
	for _, f := range []struct {
		name string
		dst  *string
	}{{"xeno/build_id", &s.BuildID}, {"xeno/interface", &s.Admitted}, {"xeno/compat", &compat}, {"xeno/guest_interface", &s.GuestInterface}} {
		if *f.dst, err = read(f.name); err != nil {
			return s, true, fmt.Errorf("/sys/hypervisor: %w", err)
		}
	}
	s.Compat = compat == "1"
	return s, true, nil
}

// CheckAgainst compares /sys/hypervisor with what the info port said:
// both come from the same hv, so a difference is a bug worth a line.
func (s SysHypervisor) CheckAgainst(h HVInfo) error {
	admitted := strings.Fields(h.Admitted)
	switch {
	case s.Release != h.Release:
		return fmt.Errorf("/sys/hypervisor says release %s, the info port %s", s.Release, h.Release)
	case s.BuildID != h.BuildID:
		return fmt.Errorf("/sys/hypervisor says build %s, the info port %s", s.BuildID, h.BuildID)
	case len(admitted) > 0 && !strings.HasPrefix(admitted[0], s.Admitted):
		return fmt.Errorf("/sys/hypervisor says interface %s, the info port %s", s.Admitted, h.Admitted)
	}
	return nil
}
