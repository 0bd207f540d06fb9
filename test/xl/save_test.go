package xl_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/snapshot"
	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/toolstack"
)

// liveLine is xl migrate's report of a live migration.
var liveLine = regexp.MustCompile(`Live migration: (\d+) rounds, \d+ pages \([0-9.]+ MiB\) sent, downtime [0-9.]+(ms|µs|s)\n`)

// consecutive fails unless ns counts up by one from ns[0].
func consecutive(t *testing.T, what string, ns []int) {
	t.Helper()
	for i, n := range ns {
		if n != ns[0]+i {
			t.Fatalf("%s: count %d is %d, want %d: a gap or a repeat\n%v", what, i, n, ns[0]+i, ns)
		}
	}
}

// domRec is what a save/restore test reads of a domain from xl list -l.
type domRec struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	UUID  string `json:"uuid"`
	State string `json:"xl_state"`
}

func (e *env) dom(name string) *domRec {
	e.t.Helper()
	var ds []domRec
	if err := json.Unmarshal([]byte(e.mustRun("list", "-l")), &ds); err != nil {
		e.t.Fatal(err)
	}
	for _, d := range ds {
		if d.Name == name {
			return &d
		}
	}
	return nil
}

// consoleLog is domain id's console.log, which its hv writes itself.
func (e *env) consoleLog(id int) string {
	b, _ := os.ReadFile(e.st().ConsoleLog(id))
	return string(b)
}

// st is the test's state directory's layout (toolstack's paths).
func (e *env) st() *toolstack.State { return &toolstack.State{Dir: e.state} }

// waitCount waits until domain id's console shows count n.
func (e *env) waitCount(id, n int) string {
	e.t.Helper()
	var s string
	e.waitFor(fmt.Sprintf("XTF COUNT %d on domain %d's console", n, id), 60*time.Second, func() bool {
		s = e.consoleLog(id)
		return strings.Contains(s, fmt.Sprintf("XTF COUNT %d\n", n))
	})
	return s
}

// TestSaveRestoreMigrate runs xl save, restore and migrate on the
// counter guest, which prints XTF COUNT n for n = 0, 1, ...: each time
// the domain comes back under a new ID with its name and UUID, and its
// console goes on at exactly the next number. A snapshot with a bit
// flipped, or cut short, is refused with the reason and leaves nothing.
func TestSaveRestoreMigrate(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "counter")
	cfg := e.write("ctr.cfg", fmt.Sprintf("name = \"ctr\"\nkernel = %q\nmemory = 32\n", k))
	e.mustRun("create", cfg)
	d0 := e.dom("ctr")
	if d0 == nil {
		t.Fatal("ctr not listed after create")
	}
	e.waitCount(d0.ID, 10)

	// save -p: the domain stays paused, and its console is complete.
	f1 := filepath.Join(e.dir, "ctr1.snap")
	e.mustRun("save", "-p", "ctr", f1)
	if d := e.dom("ctr"); d == nil || d.ID != d0.ID || d.State != "--p---" {
		t.Fatalf("after save -p: %+v, want domain %d paused", d, d0.ID)
	}
	// xl destroy removes the domain's directory, console.log with it.
	log0 := e.consoleLog(d0.ID)
	before := testenv.Counts(t, log0)
	e.mustRun("destroy", "ctr")

	// restore: a new ID, the same name and UUID, the count goes on.
	_, errs, code := e.run("restore", f1)
	if code != 0 || !strings.Contains(errs, "Restored domain ctr (id=") {
		t.Fatalf("xl restore: exit %d: %s", code, errs)
	}
	d1 := e.dom("ctr")
	if d1 == nil || d1.ID == d0.ID || d1.UUID != d0.UUID {
		t.Fatalf("restored: %+v, want a new ID with UUID %s", d1, d0.UUID)
	}
	last := before[len(before)-1]
	e.waitCount(d1.ID, last+10)
	// A line cut by the save is finished by the restored guest: the two
	// consoles together are one run.
	all := testenv.Counts(t, log0+e.consoleLog(d1.ID))
	consecutive(t, "save -p, restore", all)
	if all[0] != 0 {
		t.Fatalf("the first console starts at %d", all[0])
	}
	t.Logf("save -p and restore: counted to %d, then on to %d under ID %d", last, all[len(all)-1], d1.ID)

	// save -c: it runs on; save: it is gone, and restore -p brings it
	// back paused until unpause.
	f2 := filepath.Join(e.dir, "ctr2.snap")
	e.mustRun("save", "-c", "ctr", f2)
	if d := e.dom("ctr"); d == nil || d.ID != d1.ID || d.State == "--p---" {
		t.Fatalf("after save -c: %+v, want domain %d running", d, d1.ID)
	}
	now := testenv.Counts(t, e.consoleLog(d1.ID))
	e.waitCount(d1.ID, now[len(now)-1]+3)
	f3 := filepath.Join(e.dir, "ctr3.snap")
	e.mustRun("save", "ctr", f3)
	if d := e.dom("ctr"); d != nil {
		t.Fatalf("still listed after xl save: %+v", d)
	}
	e.mustRun("restore", "-p", f3)
	d3 := e.dom("ctr")
	if d3 == nil || d3.State != "--p---" || d3.UUID != d0.UUID {
		t.Fatalf("after restore -p: %+v", d3)
	}
	time.Sleep(300 * time.Millisecond)
	if s := e.consoleLog(d3.ID); strings.Contains(s, "XTF COUNT") {
		t.Fatalf("a domain restored with -p printed before unpause: %q", s)
	}
	e.mustRun("unpause", "ctr")
	got := testenv.Counts(t, e.waitCount(d3.ID, now[len(now)-1]+10))
	consecutive(t, "save, restore -p", got)

	// migrate, twice: xl's -s "" (HOST is the receiver's whole command)
	// and a local stand-in for ssh that drops the host.
	ssh := e.write("fakessh", "#!/bin/sh\nshift\nexport PATH="+filepath.Dir(e.xl)+":$PATH\nexec \"$@\"\n")
	if err := os.Chmod(ssh, 0o755); err != nil {
		t.Fatal(err)
	}
	// The migrations are live: the domain counts while it is sent. Its
	// console log goes with its directory when the source is destroyed,
	// so it is held open to read the whole of it afterwards.
	prev := d3.ID
	for i, how := range [][]string{
		{"-s", "", "ctr", e.xl + " migrate-receive"},
		{"-s", ssh, "--debug", "ctr", "localhost"},
	} {
		src, err := os.Open(e.st().ConsoleLog(prev))
		if err != nil {
			t.Fatal(err)
		}
		_, errs, code := e.run(append([]string{"migrate"}, how...)...)
		if code != 0 || !strings.Contains(errs, "Migrated domain ctr") {
			src.Close()
			t.Fatalf("xl migrate %q: exit %d: %s", how, code, errs)
		}
		seenLog, err := io.ReadAll(src)
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		m := liveLine.FindStringSubmatch(errs)
		if m == nil {
			t.Fatalf("xl migrate %q did not report a live migration:\n%s", how, errs)
		}
		if rounds, _ := strconv.Atoi(m[1]); rounds < 2 {
			t.Errorf("xl migrate %q: %d rounds, want a live one and the paused last at least:\n%s", how, rounds, errs)
		}
		if slices.Contains(how, "--debug") {
			if !strings.Contains(errs, "round 0: ") || !strings.Contains(errs, ", paused") {
				t.Errorf("xl migrate --debug did not show its rounds:\n%s", errs)
			}
			for _, l := range strings.Split(errs, "\n") {
				if strings.HasPrefix(l, "migrate: round") || strings.HasPrefix(l, "migrate: the rounds") {
					t.Log(l)
				}
			}
		}
		dm := e.dom("ctr")
		if dm == nil || dm.ID == prev || dm.UUID != d0.UUID || e.dom("ctr--migratedaway") != nil {
			t.Fatalf("after migrate %d: %+v (from %d)", i, dm, prev)
		}
		seen := testenv.Counts(t, string(seenLog))
		e.waitCount(dm.ID, seen[len(seen)-1]+10)
		got := testenv.Counts(t, string(seenLog)+e.consoleLog(dm.ID))
		consecutive(t, "migrate", got)
		t.Logf("migrate %q: from ID %d to %d, the count went on from %d; %s", how, prev, dm.ID, seen[len(seen)-1], strings.TrimSpace(m[0]))
		prev = dm.ID
	}

	// A receiver that is not there (its xl is missing) leaves the
	// source running, named as it was.
	_, errs, code = e.run("migrate", "-s", "", "ctr", filepath.Join(e.dir, "no-xl")+" migrate-receive")
	if code != 1 || !strings.Contains(errs, "runs on here") {
		t.Fatalf("a migration to nowhere: exit %d: %s", code, errs)
	}
	if d := e.dom("ctr"); d == nil || d.ID != prev || d.State == "--p---" {
		t.Fatalf("the source after a failed migration: %+v", d)
	}

	// A stream cut in the middle: the receiver's input ends after 16
	// KiB, past the header and in the first round's pages (this guest's
	// stream is about 100 KiB), so that its hv has started and is
	// restoring. That hv refuses the stream as truncated, in its words;
	// nothing of it is left on the target (record, directory or
	// process), and the source runs on.
	cut := e.write("cutrecv", "#!/bin/sh\nhead -c 16384 | exec "+e.xl+" migrate-receive\n")
	if err := os.Chmod(cut, 0o755); err != nil {
		t.Fatal(err)
	}
	_, errs, code = e.run("migrate", "-s", "", "ctr", cut)
	if code != 1 || !strings.Contains(errs, "runs on here") || !strings.Contains(errs, "--restore fd=") || !strings.Contains(errs, "truncated") || strings.Contains(errs, "panic") {
		t.Fatalf("a migration cut after 16 KiB: exit %d: %s", code, errs)
	}
	t.Logf("a migration cut after 16 KiB: %s", errs)
	if d := e.dom("ctr"); d == nil || d.ID != prev || d.State == "--p---" || len(e.list()) != 1 {
		t.Fatalf("after a cut migration: %+v among %+v", d, e.list())
	}
	e.waitFor("only the source's hv and directory", 5*time.Second, func() bool {
		ents, _ := os.ReadDir(filepath.Join(e.state, "domains"))
		return len(ents) == 1 && ents[0].Name() == strconv.Itoa(prev) && len(e.hvProcesses()) == 1
	})
	e.mustRun("destroy", "ctr")

	// Damaged snapshots: refused with the reason, nothing listed.
	good, err := os.ReadFile(f2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"flipped", flip(good, len(good)/2), "corrupt"},
		{"truncated", good[:len(good)*2/3], "truncated"},
		{"header-flipped", flip(good, 20), "snapshot"},
	} {
		p := e.write(c.name+".snap", string(c.data))
		_, errs, code := e.run("restore", p)
		if code != 1 || !strings.Contains(errs, c.want) || strings.Contains(errs, "panic") {
			t.Errorf("restore of a %s snapshot: exit %d: %s", c.name, code, errs)
		}
		if d := e.dom("ctr"); d != nil {
			t.Errorf("a %s snapshot left %+v", c.name, d)
		}
	}
	e.assertClean()
}

// hvProcesses are the pids of the hv processes of e's domains.
func (e *env) hvProcesses() []int {
	var hvs []int
	for _, pid := range e.processes() {
		cl, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if argv0, _, _ := strings.Cut(string(cl), "\x00"); argv0 == e.hv {
			hvs = append(hvs, pid)
		}
	}
	return hvs
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x10
	return c
}

// TestRestoreRefusesInterface: xl restore decides at the toolstack, as
// xl create does, whether the hv that will run the domain admits the
// interface it was saved with: a -dev interface of another build is
// refused naming both versions and the rule (which rule depends on the
// hv's release), before anything starts.
// The snapshot needs no guest: only its header is read.
func TestRestoreRefusesInterface(t *testing.T) {
	e := newEnv(t)
	cfg := map[string]any{"version": 1, "config": map[string]any{"name": "old", "uuid": "3f0e4c3a-0000-4000-8000-000000000001", "memory_mib": 32, "vcpus": 1, "kernel": "/none"}}
	b, _ := json.Marshal(cfg)
	p := filepath.Join(e.dir, "dev.snap")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w, err := snapshot.NewWriter(f, snapshot.Header{Release: "1.3.0-dev", BuildID: "otherbuild", Interface: "1.3-dev@otherbuild", MemoryMiB: 32, VCPUs: 1, Config: b})
	if err == nil {
		err = w.Close()
	}
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(e.hv, "--version").Output()
	if err != nil {
		t.Fatalf("hv --version: %v", err)
	}
	rel := strings.TrimPrefix(strings.Split(string(out), "\n")[0], "release ")
	_, errs, code := e.run("restore", p)
	if code != 1 || !strings.Contains(errs, "refused (interface, rule ") || !strings.Contains(errs, "guest interface 1.3-dev") || !strings.Contains(errs, "hv "+rel) || !strings.Contains(errs, "snapshot of hv 1.3.0-dev, build otherbuild") {
		t.Fatalf("xl restore of another build's dev snapshot (hv %s): exit %d: %s", rel, code, errs)
	}
	t.Logf("%s", errs)
	e.assertClean()
}

// saveLinux saves, restores and migrates the minimal image three times
// in a row: after each its uptime has gone on, the file it wrote before
// the first save is still there, and its console takes a typed line and
// answers.
const saveLinux = xlPrelude + `cfg sv destroy
xl create /tmp/sv.cfg || fail "xl create"
waitlog sv 'xeno-init: watching' 180
type_line sv 'echo kept-across-saves > /xeno-marker; echo W0 $(cut -d" " -f1 /proc/uptime)'
waitlog sv 'W0 [0-9]' 30
# up TAG: the guest prints TAG, its uptime and the marker file; $u is
# the uptime.
up() {
	type_line sv "echo $1 \$(cut -d' ' -f1 /proc/uptime) \$(cat /xeno-marker)"
	waitlog sv "$1 [0-9.]* kept-across-saves" 60
	u=$(log sv | sed -n "s/^$1 \([0-9.]*\) .*/\1/p" | tail -1)
	[ -n "$u" ] || fail "$1: no uptime on the console"
}
later() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(b > a) }'; }
uuid=$(xl list -v sv | awk 'NR==2 {print $7}')
up U0; prev=$u
for r in 1 2 3; do
	id=$(xl domid sv)
	t0=$(date +%s)
	timeout 300 xl save sv /tmp/sv.snap || fail "round $r: xl save"
	xl list sv >/dev/null 2>&1 && fail "round $r: sv still listed after xl save"
	size=$(stat -c %s /tmp/sv.snap)
	timeout 300 xl restore /tmp/sv.snap || fail "round $r: xl restore"
	t1=$(date +%s)
	[ "$(xl domid sv)" != "$id" ] || fail "round $r: restored under the same ID $id"
	[ "$(xl list -v sv | awk 'NR==2 {print $7}')" = "$uuid" ] || fail "round $r: the UUID changed"
	up S$r
	later "$prev" "$u" || fail "round $r: uptime $u after the restore, $prev before"
	echo "LC: round $r: saved ($size bytes) and restored in $((t1-t0)) s, ID $id -> $(xl domid sv), uptime $prev -> $u"
	prev=$u
	id=$(xl domid sv)
	# The source's logs go with its domain directory; keep their ends
	# for a failed migration (CI25: the source ended during round 0).
	tail -f $XENO_STATE_DIR/domains/$id/hv/hv.log > /tmp/src-hv.log 2>/dev/null & th=$!
	tail -c 2000 -f $XENO_STATE_DIR/domains/$id/hv/console.log > /tmp/src-con.log 2>/dev/null & tc=$!
	out=$(timeout 300 xl migrate -s "" --debug sv "xl migrate-receive" 2>&1) ||
		fail "round $r: xl migrate: $out
--- the source's hv.log:
$(tail -n 30 /tmp/src-hv.log)
--- the source's console:
$(tail -c 2000 /tmp/src-con.log)"
	kill $th $tc 2>/dev/null
	live=$(echo "$out" | grep '^Live migration: ')
	[ -n "$live" ] || fail "round $r: xl migrate reported no live migration: $out"
	[ "$(xl domid sv)" != "$id" ] || fail "round $r: migrated under the same ID"
	xl list sv--migratedaway >/dev/null 2>&1 && fail "round $r: the source is left"
	up M$r
	later "$prev" "$u" || fail "round $r: uptime $u after the migration, $prev before"
	echo "LC: round $r: migrated, ID $id -> $(xl domid sv), uptime $prev -> $u; $live"
	echo "$out" | grep 'migrate: round\|stopped' | sed "s/^/LC: round $r: /"
	prev=$u
done
timeout 60 xl destroy sv || fail "xl destroy"
[ "$(xl list | wc -l)" -le 1 ] || fail "domains left: $(xl list)"
ls "$XENO_STATE_DIR"/incoming-* >/dev/null 2>&1 && fail "migrate-receive left its file"
echo "LC: nothing left"
echo LC-DONE
`

// TestSaveRestoreXenoLinux saves, restores and migrates (live) a running
// Linux guest (the minimal image, xeno kernel) three times in a row
// through xl: its uptime keeps increasing, a file it wrote before the first save
// is read back after each, and its console keeps working.
func TestSaveRestoreXenoLinux(t *testing.T) {
	why := kvmlab.Need(t)
	runLifecycle(t, why, buildMinimal(t), saveLinux)
}
