package xl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

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

// hvStamp is an hv build's stamp as `hv --version` prints it.
type hvStamp struct {
	Build     abi.Build
	Interface string
	Caps      string
}

// hvVersionTimeout bounds `hv --version`, which only prints.
const hvVersionTimeout = 10 * time.Second

// queryHV runs `hv --version` and parses what it prints.
func queryHV(hv string) (hvStamp, error) {
	ctx, cancel := context.WithTimeout(context.Background(), hvVersionTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, hv, "--version")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, firstLine(msg))
		}
		return hvStamp{}, fmt.Errorf("%s: %w", hv, err)
	}
	st, err := parseHVVersion(out)
	if err != nil {
		return hvStamp{}, fmt.Errorf("%s --version: %w", hv, err)
	}
	return st, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// parseHVVersion reads the "key value" lines of `hv --version` (the
// format of `xeno version`). Every key must be present once; unknown
// keys are ignored, so that a newer hv may add some.
func parseHVVersion(out []byte) (hvStamp, error) {
	want := []string{"release", "interface", "build_id", "changeset", "caps"}
	got := map[string]string{}
	for i, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok || k == "" {
			return hvStamp{}, fmt.Errorf("line %d: %q is not \"KEY VALUE\"", i+1, line)
		}
		if _, dup := got[k]; dup {
			return hvStamp{}, fmt.Errorf("line %d: %s given twice", i+1, k)
		}
		got[k] = v
	}
	for _, k := range want {
		if got[k] == "" {
			return hvStamp{}, fmt.Errorf("no %s line", k)
		}
	}
	r, err := abi.ParseRelease(got["release"])
	if err != nil {
		return hvStamp{}, err
	}
	if _, err := abi.ParseInterface(got["interface"]); err != nil {
		return hvStamp{}, err
	}
	return hvStamp{
		Build:     abi.Build{Release: r, BuildID: got["build_id"], Changeset: got["changeset"]},
		Interface: got["interface"],
		Caps:      got["caps"],
	}, nil
}

// infoCmd prints xl info's "key : value" lines. The hv_* fields describe
// the hv binary domains would run with, from its --version; if that
// fails they are xl's own stamp (make stamps both with one release), and
// hv_source says so.
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
	hv := hvStamp{Build: b, Interface: b.Release.Interface().Short(), Caps: b.Caps()}
	var source string
	hvBin, err := os.Executable()
	if err == nil {
		hvBin, err = hvPath(hvBin)
	}
	if err == nil {
		var st hvStamp
		if st, err = queryHV(hvBin); err == nil {
			hv, source = st, hvBin+" --version"
		}
	}
	if err != nil {
		source = fmt.Sprintf("xl's own stamp (hv --version failed: %v)", err)
	}
	rows := [][2]string{
		{"host", utsString(u.Nodename)},
		{"release", utsString(u.Release)},
		{"machine", utsString(u.Machine)},
		{"nr_cpus", fmt.Sprint(host.CPUs)},
		{"total_memory", fmt.Sprint(host.TotalMiB)},
		{"free_memory", fmt.Sprint(host.FreeMiB)},
		{"hv_major", fmt.Sprint(hv.Build.Release.Major)},
		{"hv_minor", fmt.Sprint(hv.Build.Release.Minor)},
		{"hv_extra", hv.Build.Release.Extraversion()},
		{"hv_version", hv.Build.Release.String()},
		{"hv_interface", hv.Interface},
		{"hv_caps", hv.Caps},
		{"hv_changeset", hv.Build.Changeset},
		{"hv_build_id", hv.Build.BuildID},
		{"hv_source", source},
		{"kvm_api_version", kvmAPIVersion()},
		{"xl_version", b.Release.String()},
		{"xl_build_id", b.BuildID},
		{"xl_go_version", goVersion},
		{"xl_state_dir", toolstack.StateDirFromEnv()},
	}
	for _, r := range rows {
		fmt.Fprintf(io.Stdout, "%-23s: %s\n", r[0], r[1])
	}
	return nil
}
