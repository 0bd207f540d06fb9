package hv_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// benchLabSh is the shell both peer benchmarks of snapshots run in the
// lab: wall clock from /proc/uptime (10 ms steps: busybox date has no
// %N), and QEMU microvm driven through its human monitor. A QEMU is
// named by the descriptor its monitor is fed from (a fifo held open, so
// that QEMU does not see the end of its input), which keeps two of them
// apart in one migration: guest output in /tmp/qFD.out, monitor answers
// in /tmp/qFD.mon.
const benchLabSh = `now() { cut -d' ' -f1 /proc/uptime; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
waitfile() { # FILE PATTERN: up to 60 s
	for i in $(seq 6000); do grep -q "$2" "$1" 2>/dev/null && return 0; usleep 10000; done
	echo "BENCH-FAIL no '$2' in $1"; cat "$1"; exit 1
}
qemu_start() { # FD GUEST MiB, more arguments
	fd=$1 k=$2 m=$3; shift 3
	rm -f /tmp/q$fd.in /tmp/q$fd.mon /tmp/q$fd.out; mkfifo /tmp/q$fd.in
	$QEMU_BIN -M microvm -accel kvm -nodefaults -no-user-config -display none -m $m \
		-serial file:/tmp/q$fd.out -kernel $G/$k -monitor stdio "$@" </tmp/q$fd.in >/tmp/q$fd.mon 2>&1 &
	eval "QPID$fd=\$!; exec $fd>/tmp/q$fd.in"
}
mon() { eval "echo \"\$2\" >&$1"; } # FD COMMAND
qemu_stop() { mon $1 quit; eval "exec $1>&-; wait \$QPID$1"; }
qemu_migrated() { # FD: poll info migrate until it says completed, up to 60 s
	for i in $(seq 6000); do
		mon $1 'info migrate'; usleep 10000
		grep -q 'Migration status: completed' /tmp/q$1.mon && return 0
		grep -q 'Migration status: failed' /tmp/q$1.mon && break
	done
	echo "BENCH-FAIL QEMU's migration did not complete"; tail -40 /tmp/q$1.mon; exit 1
}
qfield() { # FD NAME: a number info migrate gave for the completed migration
	sed -n '/Migration status: completed/,$p' /tmp/q$1.mon | sed -n "s/^$2: \([0-9]*\).*/\1/p" | head -1
}
`

// benchSnapshotLab saves and restores the counter micro-guest, mostly
// idle RAM, at each size: through xl (xl save; xl restore until the
// restored guest prints its next line) and through QEMU microvm on the
// same KVM with the PVH build of the same guest (stop and migrate to
// "exec:cat > FILE" until info migrate says completed; a new QEMU with
// -incoming from the file, cont, until the guest prints). Times are
// wall clock, save including xl's own work (xl save -p, so the domain's
// log can be read) and restore until the guest prints again. Each VMM's
// own figure for the save is printed beside: hv's "saved to a snapshot
// in" line, QEMU's "total time" of the migration.
const benchSnapshotLab = `for rep in 1 2; do
for m in 64 256 1024; do
	printf 'name = "c%s"\nkernel = "%s"\nmemory = %s\n' $m $G/counter $m > /tmp/c.cfg
	xl create /tmp/c.cfg >/dev/null 2>&1 || { echo "BENCH-FAIL xl create $m"; exit 1; }
	id=$(xl domid c$m)
	waitfile $XENO_STATE_DIR/domains/$id/hv/console.log 'XTF COUNT 5$'
	t0=$(now); xl save -p c$m /tmp/c.snap || { echo "BENCH-FAIL xl save $m"; exit 1; }; ts=$(now)
	own=$(grep -o 'saved to a snapshot in [0-9.]* s' $XENO_STATE_DIR/domains/$id/hv/hv.log | cut -d' ' -f6)
	xl destroy c$m
	size=$(stat -c %s /tmp/c.snap)
	t1=$(now)
	xl restore /tmp/c.snap 2>/dev/null || { echo "BENCH-FAIL xl restore $m"; exit 1; }
	id=$(xl domid c$m)
	waitfile $XENO_STATE_DIR/domains/$id/hv/console.log 'XTF COUNT'
	t2=$(now)
	xl destroy c$m
	echo "BENCH hv $m $(ms $t0 $ts) $(ms $t1 $t2) $size $(ms 0 ${own:-0})"

	qemu_start 3 counter.pvh $m
	waitfile /tmp/q3.out 'XTF COUNT 5$'
	t0=$(now); mon 3 stop; mon 3 'migrate "exec:cat > /tmp/q.snap"'
	qemu_migrated 3
	t1=$(now)
	total=$(qfield 3 'total time')
	qemu_stop 3
	size=$(stat -c %s /tmp/q.snap)
	qemu_start 3 counter.pvh $m -incoming "exec:cat /tmp/q.snap"
	for i in $(seq 6000); do
		mon 3 'info status'; usleep 10000
		grep 'VM status' /tmp/q3.mon | tail -1 | grep -q 'inmigrate' || { grep -q 'VM status' /tmp/q3.mon && break; }
	done
	mon 3 cont
	waitfile /tmp/q3.out 'XTF COUNT'
	t2=$(now)
	qemu_stop 3
	echo "BENCH qemu $m $(ms $t0 $t1) $(ms $t1 $t2) $size ${total:--}"
done
done
echo BENCH-DONE
`

// BenchmarkSaveRestorePeers: save and restore of a mostly idle guest of
// 64 MiB, 256 MiB and 1 GiB (the counter micro-guest), xl save/restore
// next to QEMU microvm's migration to a file and its -incoming restore,
// on the same KVM (the nested lab's here), two rounds (docs/benchmarks.md).
// Firecracker's published figures are the anchor there.
func BenchmarkSaveRestorePeers(b *testing.B) {
	why := kvmlab.Need(b)
	files := kvmlab.QEMUFiles(b)
	files["counter"] = guest(b, "counter")
	files["counter.pvh"] = testenv.Guest(b, "counter.pvh.elf")
	for i := 0; i < b.N; i++ {
		rows, where := snapshotPeersLab(b, why, files, benchSnapshotLab, 0)
		fmt.Printf("\nsave and restore of an idle counter micro-guest, 1 vCPU, on %s\n", where)
		fmt.Printf("  %-5s %6s %9s %12s %12s %16s\n", "vmm", "MiB", "save ms", "restore ms", "file bytes", "VMM's own ms")
		for _, f := range rows {
			if len(f) != 7 {
				continue
			}
			fmt.Printf("  %-5s %6s %9s %12s %12s %16s\n", f[1], f[2], f[3], f[4], f[5], f[6])
			save, err1 := strconv.ParseFloat(f[3], 64)
			restore, err2 := strconv.ParseFloat(f[4], 64)
			if err1 == nil && err2 == nil {
				b.ReportMetric(save, f[1]+"-"+f[2]+"MiB-save-ms")
				b.ReportMetric(restore, f[1]+"-"+f[2]+"MiB-restore-ms")
			}
		}
	}
}

// snapshotPeersLab runs script after benchLabSh's helpers, with QEMU_BIN
// set, through kvmlab.Script, and returns the fields of its BENCH lines
// and the KVM it ran on. A BENCH-FAIL line, or a script that did not
// reach BENCH-DONE, fails b.
func snapshotPeersLab(b *testing.B, why string, files map[string]string, script string, labMiB int) (rows [][]string, where string) {
	b.Helper()
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	out, code := kvmlab.ScriptIn(b, why, files, "export QEMU_BIN="+qemu+"\n"+benchLabSh+script, labMiB)
	if code != 0 || !strings.Contains(out, "BENCH-DONE") || strings.Contains(out, "BENCH-FAIL") {
		b.Fatalf("exit %d:\n%s", code, out)
	}
	for _, r := range benchLines(out) {
		rows = append(rows, strings.Fields(r))
	}
	where = "/dev/kvm"
	if why != "" {
		where = "the nested lab's KVM (kvm-amd on QEMU TCG's AMD-V)"
	}
	return rows, where
}
