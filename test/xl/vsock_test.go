package xl_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/kvmlab"
)

// vsockScript boots the minimal image once under xl and checks both
// directions of its vsock device: host to guest (xl query, through the
// hv's CONNECT handshake to xeno-init's channel on port 1024), guest to
// host (xeno-init's announcement reaching the Unix socket
// vsock.sock_1024 in the hv's directory, given to the domain's uid as a
// host agent must), then times 100 round trips.
const vsockScript = xlPrelude + `cfg vs destroy
xl create /tmp/vs.cfg || fail "xl create"
d="$XENO_STATE_DIR/domains/$(xl domid vs)/hv"
[ -S "$d/vsock.sock" ] || fail "no $d/vsock.sock"
"$G/vsockhost" listen "$d/vsock.sock_1024" 300 > /tmp/announce 2>&1 &
waitlog vs 'xeno-init: command channel on vsock port 1024' 300
echo "VS: interface: $(xl query vs interface 2>&1)"
echo "VS: health: $(xl query vs health 2>&1)"
echo "VS: unknown: $(xl query vs reboot 2>&1)"
i=0
while [ $i -lt 20 ] && ! grep -q ready /tmp/announce; do sleep 1; i=$((i+1)); done
echo "VS: announce: $(cat /tmp/announce)"
echo "VS: bench: $("$G/vsockhost" bench "$d/vsock.sock" 1024 100 2>&1)"
xl destroy vs || fail "xl destroy"
i=0
while [ $i -lt 10 ] && [ -e "$d/vsock.sock" ]; do sleep 1; i=$((i+1)); done
[ -e "$d/vsock.sock" ] && fail "vsock.sock left behind"
echo LC-DONE
`

// TestVsockXenoLinux runs the minimal image (the xeno guest kernel with
// VIRTIO_VSOCKETS, xeno-init) under xl, which gives every domain a
// vsock device, and checks a connection each way carries data: xl query
// reads xeno-init's interface line and health, and xeno-init's
// announcement reaches a host Unix socket. The hv runs jailed, so its
// connect to vsock.sock_1024 also proves the seccomp filter admits it.
func TestVsockXenoLinux(t *testing.T) {
	why := kvmlab.Need(t)
	img := buildMinimal(t)
	helper := filepath.Join(t.TempDir(), "vsockhost")
	build := exec.Command("go", "build", "-trimpath", "-o", helper, "./testdata/vsockhost")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build vsockhost: %v\n%s", err, out)
	}
	files := map[string]string{"vsockhost": helper}
	for _, f := range []string{"minimal.vmlinuz", "minimal.initrd", "minimal.manifest.toml"} {
		files[f] = filepath.Join(img, f)
	}
	out, code := kvmlab.Script(t, why, files, vsockScript)
	for _, m := range regexp.MustCompile(`(?m)^VS: .*$`).FindAllString(out, -1) {
		t.Log(m)
	}
	for _, want := range []string{
		"VS: interface: running as interface 1.2",
		"VS: health: ok uptime ",
		`VS: unknown: error unknown request "reboot"`,
		"VS: announce: xeno-init ready: running as interface 1.2",
		"VS: bench: connect ",
		"LC-DONE",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q", want)
		}
	}
	if t.Failed() || code != 0 {
		t.Fatalf("exit %d, output:\n%s", code, out[max(0, len(out)-6000):])
	}
}
