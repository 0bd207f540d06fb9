package hv_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// benchMigrateLab migrates the dirty_counter micro-guest live, at each
// size, from one VMM to another in the same lab: xl migrate through a
// stand-in for ssh that runs the receiver locally, and QEMU microvm (the
// PVH build of the same guest) to a second QEMU waiting with -incoming on
// a Unix socket. QEMU keeps its default downtime limit (300 ms); its
// bandwidth limit (128 MiB/s by default) is raised to 10 GiB/s, since the
// hv sends as fast as the pipe takes it.
//
// Both VMMs' downtime is the source's, from the pause to the end of the
// stream; neither includes the target's load and start. So a sampler
// also watches the guest's output on both sides (the files' sizes, every
// 5 ms or so) and reports the longest time in which no byte came: the
// stall the guest's user saw, with the guest's own time between lines
// (measured before) and the mean time between samples beside it.
const benchMigrateLab = `printf '#!/bin/sh\nshift\nexec "$@"\n' > /tmp/fakessh; chmod 755 /tmp/fakessh
stall_watch() { # FILES, a pattern looked up at each sample
	( while :; do read up _ </proc/uptime; echo "$up" $(stat -c '%n:%s' $1 2>/dev/null); usleep 5000; done ) >/tmp/stall &
	SPID=$!
}
stall_stop() { # the longest time in ms in which no file grew, the mean ms between samples
	kill $SPID; wait $SPID 2>/dev/null
	awk '{ grew = 0
		for (i = 2; i <= NF; i++) { split($i, f, ":"); if ((f[1] in size) ? f[2] > size[f[1]] : f[2] > 0) grew = 1; size[f[1]] = f[2] }
		if (NR == 1) first = last = $1; else if (grew) { if ($1 - last > g) g = $1 - last; last = $1 }
		t = $1 }
	END { printf "%.0f %.1f", g * 1000, (t - first) * 1000 / (NR - 1) }' /tmp/stall
}
lastcount() { cat "$@" | sed '$d' | grep -o '^XTF COUNT [0-9]*$' | tail -1 | cut -d' ' -f3; }
counts_ok() { # FILES: the guest's output, source's then target's, counts on by one
	cat "$@" | sed '$d' | grep '^XTF COUNT' | awk 'NR > 1 && $3 != p + 1 { print "BENCH-FAIL count " p " then " $3; exit 1 } { p = $3 }' || exit 1
	if cat "$@" | grep -q FAIL; then echo "BENCH-FAIL $(cat "$@" | grep FAIL)"; exit 1; fi
}
period() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 / 20 }'; }
dur_ms() { # a Go duration as xl prints it
	awk -v d="$1" 'BEGIN { u = d; sub(/^[0-9.]+/, "", u); f = u == "ms" ? 1 : u == "s" ? 1000 : u == "ns" ? 1e-6 : 1e-3; printf "%.1f", d * f }'
}
for rep in 1 2; do
for m in $SIZES; do
	printf 'name = "m%s"\nkernel = "%s"\nmemory = %s\n' $m $G/dirty_counter $m > /tmp/m.cfg
	xl create /tmp/m.cfg >/dev/null 2>&1 || { echo "BENCH-FAIL xl create $m"; exit 1; }
	log=$XENO_STATE_DIR/domains/$(xl domid m$m)/hv/console.log
	waitfile $log 'XTF COUNT 5$'; ta=$(now); waitfile $log 'XTF COUNT 25$'; tb=$(now)
	# The source's log goes with its directory when xl destroys it.
	exec 4<$log 5<${log%/console.log}/hv.log
	stall_watch "$XENO_STATE_DIR/domains/*/hv/console.log"
	t0=$(now)
	if ! out=$(xl migrate -s /tmp/fakessh --debug m$m localhost 2>&1); then
		echo "BENCH-FAIL xl migrate $m: $out"; echo "the source's hv log:"; cat <&5; echo "its console's end:"; tail -c 300 <&4
		exit 1
	fi
	t1=$(now)
	nlog=$XENO_STATE_DIR/domains/$(xl domid m$m)/hv/console.log
	waitfile $nlog .; t2=$(now)
	cat <&4 >/tmp/src.out; exec 4<&- 5<&-
	waitfile $nlog "XTF COUNT $(($(lastcount /tmp/src.out $nlog) + 5))\$"
	stall=$(stall_stop)
	counts_ok /tmp/src.out $nlog
	xl destroy m$m
	set -- $(echo "$out" | sed -n 's/^Live migration: \([0-9]*\) rounds, \([0-9]*\) pages .*, downtime \(.*\)$/\1 \2 \3/p')
	[ $# = 3 ] || { echo "BENCH-FAIL xl migrate $m reported no live migration: $out"; exit 1; }
	echo "$out" | grep 'migrate: round\|migrate: the rounds' | sed "s/^/BENCH note hv $m MiB: /"
	echo "BENCH hv $m $(period $ta $tb) $(ms $t0 $t2) $stall $(dur_ms $3) $(ms $t0 $t1) - - $1 $2"

	qemu_start 3 dirty_counter.pvh $m
	waitfile /tmp/q3.out 'XTF COUNT 5$'; ta=$(now); waitfile /tmp/q3.out 'XTF COUNT 25$'; tb=$(now)
	rm -f /tmp/q.sock
	ts=$(now); qemu_start 4 dirty_counter.pvh $m -incoming unix:/tmp/q.sock
	for i in $(seq 6000); do mon 4 'info status'; usleep 10000; grep -q inmigrate /tmp/q4.mon && break; done
	tr=$(now)
	mon 3 'migrate_set_parameter max-bandwidth 10G'
	mon 3 'info migrate_parameters'
	stall_watch '/tmp/q3.out /tmp/q4.out'
	t0=$(now); mon 3 'migrate -d unix:/tmp/q.sock'
	waitfile /tmp/q4.out .; t2=$(now)
	qemu_migrated 3
	waitfile /tmp/q4.out "XTF COUNT $(($(lastcount /tmp/q3.out /tmp/q4.out) + 5))\$"
	stall=$(stall_stop)
	counts_ok /tmp/q3.out /tmp/q4.out
	if [ $rep$m = 164 ]; then
		echo "BENCH note QEMU's migration parameters: $(grep -a -o '^downtime-limit: .*\|^max-bandwidth: .*' /tmp/q3.mon | tr '\n' ' ')"
	fi
	echo "BENCH qemu $m $(period $ta $tb) $(ms $t0 $t2) $stall $(qfield 3 downtime) $(qfield 3 'total time') $(qfield 3 setup) $(ms $ts $tr) $(qfield 3 'dirty sync count') $(qfield 3 normal)"
	qemu_stop 3; qemu_stop 4
done
done
echo BENCH-DONE
`

// BenchmarkMigratePeers: live migration of a guest that keeps dirtying
// memory (dirty_counter, 4 MiB a line) of 64 MiB, 256 MiB, 512 MiB and
// 1 GiB, xl migrate next to QEMU microvm's live migration, on the same
// KVM (the nested lab's here), two rounds (docs/benchmarks.md). Both
// ends run on one host: 1 GiB runs in a 3.5 GiB lab of its own, since in
// the default 2 GiB one xl's memory-fits rule refuses the second domain.
func BenchmarkMigratePeers(b *testing.B) {
	why := kvmlab.Need(b)
	files := kvmlab.QEMUFiles(b)
	files["dirty_counter"] = guest(b, "dirty_counter")
	files["dirty_counter.pvh"] = testenv.Guest(b, "dirty_counter.pvh.elf")
	for i := 0; i < b.N; i++ {
		// Both ends of a migration run in one lab: two 1 GiB domains
		// (and two 1 GiB QEMUs) get a lab of their own, with room.
		rows, where := snapshotPeersLab(b, why, files, "SIZES='64 256 512'\n"+benchMigrateLab, 0)
		big, _ := snapshotPeersLab(b, why, files, "SIZES=1024\n"+benchMigrateLab, 3584)
		rows = append(rows, big...)
		fmt.Printf("\nlive migration of the dirty_counter micro-guest (4 MiB rewritten a line), 1 vCPU, on %s\n", where)
		fmt.Printf("  wall: command to the guest printing on the target; stall: longest time without guest output (sampled);\n")
		fmt.Printf("  VMM's own: downtime as each reports it (source side), total (xl migrate's wall, QEMU's total time)\n")
		const row = "  %-5s %5s %8s %9s %9s %9s %9s %9s %8s %9s %7s %8s\n"
		fmt.Printf(row, "vmm", "MiB", "line ms", "wall ms", "stall ms", "sample ms", "downtime", "total ms", "setup ms", "tgt start", "rounds", "pages")
		for _, f := range rows {
			if len(f) > 2 && f[1] == "note" {
				fmt.Printf("  %s\n", strings.Join(f[2:], " "))
				continue
			}
			if len(f) != 13 {
				continue
			}
			fmt.Printf(row, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12])
			for _, m := range []struct {
				col  int
				name string
			}{{4, "wall"}, {5, "stall"}, {7, "downtime"}} {
				if v, err := strconv.ParseFloat(f[m.col], 64); err == nil {
					b.ReportMetric(v, f[1]+"-"+f[2]+"MiB-"+m.name+"-ms")
				}
			}
		}
	}
}
