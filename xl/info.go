package xl

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/toolstack"
)

// kvmGetAPIVersion is _IO(KVMIO=0xAE, 0x00), from linux/kvm.h.
const kvmGetAPIVersion = 0xAE00

func kvmAPIVersion() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "none (" + err.Error() + ")"
	}
	defer f.Close()
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil {
		return "unknown (KVM_GET_API_VERSION: " + err.Error() + ")"
	}
	return fmt.Sprint(v)
}

func utsString(b [65]byte) string {
	return strings.TrimRight(string(b[:]), "\x00")
}

// infoCmd prints xl info's "key : value" lines. The hv_* fields describe
// the hv this xl was built with (make stamps both with one release).
func infoCmd(io IO, args []string) error {
	if pos, err := flags(args, nil); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("no arguments expected")
	}
	b := abi.Current()
	host, err := toolstack.ReadHost()
	if err != nil {
		return err
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	goVersion := runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	native := b.Release.Interface()
	rows := [][2]string{
		{"host", utsString(u.Nodename)},
		{"release", utsString(u.Release)},
		{"machine", utsString(u.Machine)},
		{"nr_cpus", fmt.Sprint(host.CPUs)},
		{"total_memory", fmt.Sprint(host.TotalMiB)},
		{"free_memory", fmt.Sprint(host.FreeMiB)},
		{"hv_major", fmt.Sprint(b.Release.Major)},
		{"hv_minor", fmt.Sprint(b.Release.Minor)},
		{"hv_extra", b.Release.Extraversion()},
		{"hv_version", b.Release.String()},
		{"hv_interface", native.Short()},
		{"hv_caps", b.Caps()},
		{"hv_changeset", b.Changeset},
		{"hv_build_id", b.BuildID},
		{"kvm_api_version", kvmAPIVersion()},
		{"xl_version", b.Release.String()},
		{"xl_go_version", goVersion},
		{"xl_state_dir", toolstack.StateDirFromEnv()},
	}
	for _, r := range rows {
		fmt.Fprintf(io.Stdout, "%-23s: %s\n", r[0], r[1])
	}
	return nil
}
