package xl_test

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/kvmlab"
)

// xlPrelude holds the shell functions of the lifecycle scripts: xl as a
// user types it, on the minimal image (the xeno guest kernel and
// xeno-init) with a shell on the console. Each step prints "LC: ..." or
// fails with "LC-FAIL: ...".
const xlPrelude = `set -u
fail() {
	for f in "$XENO_STATE_DIR"/domains/*/hv/hv.log; do echo "--- $f"; tail -8 "$f"; done
	echo "LC-FAIL: $*"; exit 1
}
log() { cat "$XENO_STATE_DIR/domains/$(xl domid "$1" 2>/dev/null)/hv/console.log" 2>/dev/null; }
# waitlog DOM PATTERN SECONDS [COUNT]: the console (kept across restarts)
# shows PATTERN at least COUNT times.
waitlog() {
	i=0
	while [ $i -lt "$3" ]; do
		[ "$(log "$1" | grep -c "$2")" -ge "${4:-1}" ] && return 0
		sleep 1; i=$((i+1))
	done
	echo "--- console of $1:"; log "$1" | tail -30
	fail "$1: no '$2' on the console in $3 s"
}
state() { xl list "$1" 2>/dev/null | awk 'NR==2 {print $5}'; }
waitstate() {
	i=0
	while [ $i -lt "$3" ]; do
		[ "$(state "$1")" = "$2" ] && return 0
		sleep 1; i=$((i+1))
	done
	fail "$1: state $(state "$1"), want $2 after $3 s"
}
# type a line on the domain's console, then detach with ^]
type_line() { (sleep 1; echo "$2"; sleep 2; printf '\035') | xl console "$1" >/dev/null 2>&1; }
cfg() {
	cat > /tmp/$1.cfg <<CFG
name = "$1"
kernel = "$G/minimal.vmlinuz"
ramdisk = "$G/minimal.initrd"
memory = 256
vcpus = 1
extra = "console=ttyS0 panic=-1 xeno.run=/bin/sh $GUEST_EXTRA"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "$2"
CFG
}

`

// lifecycle: create, states, console, pause/unpause, reboot, destroy.
const lifecycle = xlPrelude + `cfg lx preserve
xl create /tmp/lx.cfg || fail "xl create"
waitlog lx 'xeno-init: watching' 180
waitlog lx 'xeno: hypervisor' 1
s=$(state lx)
case "$s" in r-----|-b----) ;; *) fail "state $s after create, want r or b";; esac
echo "LC: created, state $s"
xl list -v lx | grep -q ' 1\.2 ' || fail "xl list -v does not show interface 1.2"

type_line lx 'echo T1 $(date +%s)'
waitlog lx 'T1 [0-9]' 30
h1=$(date +%s)
xl pause lx || fail "xl pause"
waitstate lx --p--- 5
echo "LC: paused"
sleep 5
xl unpause lx || fail "xl unpause"
h2=$(date +%s)
type_line lx 'echo T2 $(date +%s)'
waitlog lx 'T2 [0-9]' 30
t1=$(log lx | sed -n 's/^T1 \([0-9]*\).*/\1/p' | tail -1)
t2=$(log lx | sed -n 's/^T2 \([0-9]*\).*/\1/p' | tail -1)
echo "LC: guest clock T1=$t1 T2=$t2, host $h1..$h2"
[ $((t2 - t1)) -ge $((h2 - h1)) ] || fail "the guest's wall clock stood still while paused: $((t2-t1)) s against $((h2-h1)) s"
[ $((t2 - t1)) -le $((h2 - h1 + 8)) ] || fail "the guest's wall clock ran ahead: $((t2-t1)) s against $((h2-h1)) s"

old=$(xl domid lx)
timeout 60 xl reboot lx || fail "xl reboot"
i=0; while [ $i -lt 60 ]; do n=$(xl domid lx 2>/dev/null || true); [ -n "$n" ] && [ "$n" != "$old" ] && break; sleep 1; i=$((i+1)); done
[ "$(xl domid lx)" != "$old" ] || fail "on_reboot=restart gave no new ID"
waitlog lx 'xeno-init: watching' 180 2
# The guest was asked (the power button reached xeno-init, which powered
# off cleanly), not reset.
log lx | grep -q 'xeno-init: power button pressed' || { log lx | tail -30; fail "xl reboot did not ask the guest"; }
echo "LC: rebooted, ID $old -> $(xl domid lx)"

timeout 120 xl shutdown -w lx || { log lx | tail -15; fail "xl shutdown -w"; }
xl list lx >/dev/null 2>&1 && { log lx | tail -25; fail "lx still listed after shutdown -w"; }
echo "LC: shut down through the ACPI power button"

cfg ld preserve
# create -c: the console follows creation; ^] detaches and the domain runs on
(sleep 40; printf '\035') | timeout 120 xl create -c /tmp/ld.cfg > /tmp/ld.console 2>&1 || fail "xl create -c ld"
grep -q 'xeno: hypervisor' /tmp/ld.console || { tail -20 /tmp/ld.console; fail "xl create -c showed no console"; }
xl list ld >/dev/null 2>&1 || fail "detaching the console stopped ld"
echo "LC: create -c attached the console and detached"
waitlog ld 'xeno-init: watching' 180
timeout 60 xl destroy ld || fail "xl destroy ld"
xl list ld >/dev/null 2>&1 && fail "ld still listed after destroy"
echo "LC: destroyed"

[ "$(xl list | wc -l)" -le 1 ] || fail "domains left: $(xl list)"
echo "LC: nothing left"
echo LC-DONE
`

// crashes: a kernel panic under each on_crash action.
const crashes = xlPrelude + `for how in preserve restart destroy; do
	cfg c$how $how
	xl create /tmp/c$how.cfg || fail "xl create c$how"
	waitlog c$how 'xeno-init: running' 180
	id=$(xl domid c$how)
	type_line c$how 'echo c > /proc/sysrq-trigger'
	case $how in
	preserve) waitstate c$how ----c- 60; timeout 60 xl destroy c$how || fail "destroy c$how";;
	restart)
		i=0; while [ $i -lt 60 ]; do n=$(xl domid c$how 2>/dev/null || true); [ -n "$n" ] && [ "$n" != "$id" ] && break; sleep 1; i=$((i+1)); done
		[ "$(xl domid c$how)" != "$id" ] || fail "on_crash=restart gave no new ID"
		timeout 60 xl destroy c$how || fail "destroy c$how";;
	destroy)
		i=0; while [ $i -lt 60 ] && xl list c$how >/dev/null 2>&1; do sleep 1; i=$((i+1)); done
		xl list c$how >/dev/null 2>&1 && fail "on_crash=destroy left c$how";;
	esac
	echo "LC: panic with on_crash=$how"
done

[ "$(xl list | wc -l)" -le 1 ] || fail "domains left: $(xl list)"
echo "LC: nothing left"
echo LC-DONE
`

// TestLifecycleXenoLinux runs xl's lifecycle on a running Linux guest
// (the minimal image): create and create -c, list states and interface,
// the console, pause and unpause with the guest's wall clock continuous,
// reboot under a new ID, shutdown -w through the ACPI power button to
// xeno-init, and destroy. Without /dev/kvm it runs in the nested lab.
func TestLifecycleXenoLinux(t *testing.T) {
	why := kvmlab.Need(t)
	img := buildMinimal(t)
	runLifecycle(t, why, img, lifecycle)
}

// TestCrashXenoLinux panics the minimal image's kernel (sysrq c) under
// on_crash=preserve, restart and destroy: the xeno kernel reports the
// panic as a crash, and xl applies each action. A lab of its own: the
// nested lab grew unreliable after about six guests in one run.
func TestCrashXenoLinux(t *testing.T) {
	why := kvmlab.Need(t)
	runLifecycle(t, why, buildMinimal(t), crashes)
}

// bootLost is what a failed lifecycle script printed when a boot was
// lost: it never reached xeno-init, or a guest triple-faulted (CI21: 4.8 s
// into the boot of xl create -c, which then showed no console).
var bootLost = regexp.MustCompile(`LC-FAIL: \S+: no 'xeno-init: [a-z]+' on the console|hv: crash: vCPU \d+: triple fault`)

func runLifecycle(t *testing.T, why, img, script string) {
	t.Helper()
	files := map[string]string{}
	for _, f := range []string{"minimal.vmlinuz", "minimal.initrd", "minimal.manifest.toml"} {
		files[f] = filepath.Join(img, f)
	}
	out, code := kvmlab.Script(t, why, files, script)
	for try := 1; why != "" && code != 0 && bootLost.MatchString(out) && try < kvmlab.LostBootTries; try++ {
		// The nested lab's known fault (docs/kvm-notes.md): a guest that
		// triple-faults in early boot, seen once in about fifty lab boots
		// and never on hardware KVM. The whole script runs again, up to
		// kvmlab.LostBootTries in all; any other failure stands.
		t.Logf("a boot never reached xeno-init in the lab; running the script again:\n%s", out[max(0, len(out)-2000):])
		out, code = kvmlab.Script(t, why, files, script)
	}
	for _, m := range regexp.MustCompile(`LC: [^\n]*`).FindAllString(out, -1) {
		t.Log(m)
	}
	if code != 0 || !strings.Contains(out, "LC-DONE") {
		i := strings.Index(out, "LC-FAIL")
		if i < 0 {
			i = max(0, len(out)-4000)
		}
		t.Fatalf("lifecycle stopped (exit %s):\n%s", strconv.Itoa(code), out[max(0, i-3000):])
	}
}
