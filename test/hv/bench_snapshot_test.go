package hv_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// benchSnapshotLab saves and restores the counter micro-guest, mostly
// idle RAM, at each size: through xl (xl save; xl restore until the
// restored guest prints its next line) and through QEMU microvm on the
// same KVM with the PVH build of the same guest (stop and migrate to
// "exec:cat > FILE" until info migrate says completed; a new QEMU with
// -incoming from the file, cont, until the guest prints). Times are
// wall clock from /proc/uptime (10 ms steps: busybox date has no %N),
// save including xl's own work (xl save -p, so the domain's log can be
// read) and restore until the guest prints again. Each VMM's own figure
// for the save is printed beside: hv's "saved to a snapshot in" line,
// QEMU's "total time" of the migration.
const benchSnapshotLab = `now() { cut -d' ' -f1 /proc/uptime; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
waitfile() { # FILE PATTERN: up to 60 s
	for i in $(seq 6000); do grep -q "$2" "$1" 2>/dev/null && return 0; usleep 10000; done
	echo "BENCH-FAIL no '$2' in $1"; cat "$1"; exit 1
}
qemu_start() { # MiB, more arguments
	m=$1; shift
	rm -f /tmp/qin /tmp/qmon /tmp/q.out; mkfifo /tmp/qin
	$QEMU_BIN -M microvm -accel kvm -nodefaults -no-user-config -display none -m $m \
		-serial file:/tmp/q.out -kernel $G/counter.pvh -monitor stdio "$@" </tmp/qin >/tmp/qmon 2>&1 &
	QPID=$!
	exec 3>/tmp/qin
}
mon() { echo "$1" >&3; }
qemu_stop() { mon quit; exec 3>&-; wait $QPID; }
for rep in 1 2; do
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

	qemu_start $m
	waitfile /tmp/q.out 'XTF COUNT 5$'
	t0=$(now); mon stop; mon 'migrate "exec:cat > /tmp/q.snap"'
	for i in $(seq 6000); do
		mon 'info migrate'; usleep 10000
		grep -q 'Migration status: completed' /tmp/qmon && break
	done
	t1=$(now)
	total=$(grep -o 'total time: [0-9]* ms' /tmp/qmon | tail -1 | cut -d' ' -f3)
	qemu_stop
	size=$(stat -c %s /tmp/q.snap)
	qemu_start $m -incoming "exec:cat /tmp/q.snap"
	for i in $(seq 6000); do
		mon 'info status'; usleep 10000
		grep 'VM status' /tmp/qmon | tail -1 | grep -q 'inmigrate' || { grep -q 'VM status' /tmp/qmon && break; }
	done
	mon cont
	waitfile /tmp/q.out 'XTF COUNT'
	t2=$(now)
	qemu_stop
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
	qemu := testenv.RequireCmd(b, "qemu-system-x86_64")
	files := kvmlab.QEMUFiles(b)
	files["counter"] = guest(b, "counter")
	files["counter.pvh"] = testenv.Guest(b, "counter.pvh.elf")
	for i := 0; i < b.N; i++ {
		out, code := kvmlab.Script(b, why, files, "export QEMU_BIN="+qemu+"\n"+benchSnapshotLab)
		if code != 0 || !strings.Contains(out, "BENCH-DONE") {
			b.Fatalf("exit %d:\n%s", code, out)
		}
		where := "/dev/kvm"
		if why != "" {
			where = "the nested lab's KVM (kvm-amd on QEMU TCG's AMD-V)"
		}
		fmt.Printf("\nsave and restore of an idle counter micro-guest, 1 vCPU, on %s\n", where)
		fmt.Printf("  %-5s %6s %9s %12s %12s %16s\n", "vmm", "MiB", "save ms", "restore ms", "file bytes", "VMM's own ms")
		for _, r := range benchLines(out) {
			f := strings.Fields(r)
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
