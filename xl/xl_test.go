package xl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/toolstack"
)

func run(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := Main(args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), code
}

func TestFlags(t *testing.T) {
	var c, p, n bool
	pos, err := flags([]string{"g.cfg", "-cp", "memory=5", "--dryrun", "--", "-x"}, map[string]*bool{"c": &c, "p": &p, "dryrun": &n})
	if err != nil || !c || !p || !n || strings.Join(pos, " ") != "g.cfg memory=5 -x" {
		t.Errorf("got %v %v %v %v %v", pos, err, c, p, n)
	}
	if _, err := flags([]string{"-z"}, nil); err == nil {
		t.Error("unknown flag accepted")
	}
}

func TestUsageAndHelp(t *testing.T) {
	if _, e, code := run(); code != 2 || !strings.Contains(e, "usage: xl") {
		t.Errorf("no args: %d %q", code, e)
	}
	if o, _, code := run("help"); code != 0 || !strings.Contains(o, "create") || strings.Contains(o, "__monitor") {
		t.Errorf("help: %d %q", code, o)
	}
	if o, _, code := run("help", "list"); code != 0 || !strings.Contains(o, "xl list [-l] [-v]") {
		t.Errorf("help list: %d %q", code, o)
	}
	if _, e, code := run("frob"); code != 2 || !strings.Contains(e, "unknown command") {
		t.Errorf("unknown: %d %q", code, e)
	}
	if _, e, code := run("destroy"); code != 2 || !strings.Contains(e, "usage: xl destroy DOM") {
		t.Errorf("destroy without DOM: %d %q", code, e)
	}
	if _, e, code := run("shutdown", "-a", "x"); code != 2 {
		t.Errorf("shutdown -a x: %d %q", code, e)
	}
}

func TestStateColumn(t *testing.T) {
	for _, c := range []struct {
		f    toolstack.Flags
		want string
	}{
		{0, "------"},
		{toolstack.FlagRunning, "r-----"},
		{toolstack.FlagBlocked, "-b----"},
		{toolstack.FlagPaused, "--p---"},
		{toolstack.FlagShutdown, "---s--"},
		{toolstack.FlagCrashed, "----c-"},
		{toolstack.FlagDying, "-----d"},
		// Each flag has its own column, as in xl: a dying paused domain.
		{toolstack.FlagPaused | toolstack.FlagDying, "--p--d"},
		{toolstack.FlagRunning | toolstack.FlagBlocked | toolstack.FlagPaused | toolstack.FlagShutdown | toolstack.FlagCrashed | toolstack.FlagDying, "rbpscd"},
	} {
		if got := stateColumn(c.f); got != c.want {
			t.Errorf("flags %#x: %s want %s", c.f, got, c.want)
		}
	}
}

func TestUptime(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Second: " 0:00:05", 3723 * time.Second: " 1:02:03", 90000 * time.Second: "1 day,  1:00:00", 200000 * time.Second: "2 days,  7:33:20",
	} {
		if got := formatUptime(d); got != want {
			t.Errorf("%v: %q want %q", d, got, want)
		}
	}
}

type record struct{ name, state string }

// withRecords points xl at a new state directory holding a record for
// each of recs, reserved from a copy of p and saved in its state, with no
// hv behind it.
func withRecords(t *testing.T, p toolstack.Plan, recs ...record) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	t.Setenv("XENO_STATE_DIR", dir)
	st, err := toolstack.OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := &toolstack.Toolstack{State: st}
	for _, rec := range recs {
		c := *p.Config
		c.Name, c.UUID = rec.name, toolstack.NewUUID()
		pl := p
		pl.Config = &c
		r, err := ts.Reserve(&pl)
		if err != nil {
			t.Fatal(err)
		}
		r.State = rec.state
		if err := st.Save(r); err != nil {
			t.Fatal(err)
		}
	}
}

// list, domid and domname over records whose hv is not running (no KVM
// needed): the columns, the crashed letter, -l JSON and lookups.
func TestListRecords(t *testing.T) {
	withRecords(t, toolstack.Plan{Config: &toolstack.Config{MemoryMiB: 64, VCPUs: 2}, Admitted: "1.1", Compat: true},
		record{"alpha", toolstack.StateShutdown},
		record{"beta", toolstack.StateRunning}) // with no live hv: crashed
	o, e, code := run("list")
	lines := strings.Split(strings.TrimSpace(o), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("list: %d %q %q", code, o, e)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "Name ID Mem VCPUs State Time(s)" {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "alpha 1 64 2 ---s-- 0.0" {
		t.Errorf("alpha line %q", lines[1])
	}
	if f := strings.Fields(lines[2]); strings.Join(f, " ") != "beta 2 64 2 ----c- 0.0" {
		t.Errorf("beta line %q", lines[2])
	}
	if strings.Contains(o, "Domain-0") {
		t.Error("xeno has no dom0 line")
	}
	o, _, _ = run("list", "-v", "beta")
	if !strings.Contains(o, "1.1") || !strings.Contains(o, "yes") || strings.Contains(o, "alpha") {
		t.Errorf("list -v beta: %q", o)
	}
	o, _, _ = run("list", "-l")
	var js []map[string]any
	if err := json.Unmarshal([]byte(o), &js); err != nil || len(js) != 2 || js[1]["name"] != "beta" || js[1]["xl_state"] != "----c-" {
		t.Errorf("list -l: %v %q", err, o)
	}
	if o, _, code := run("domid", "beta"); code != 0 || o != "2\n" {
		t.Errorf("domid: %d %q", code, o)
	}
	if o, _, code := run("domname", "1"); code != 0 || o != "alpha\n" {
		t.Errorf("domname: %d %q", code, o)
	}
	if _, e, code := run("domname", "9"); code != 1 || !strings.Contains(e, "does not exist") {
		t.Errorf("domname 9: %d %q", code, e)
	}
	// destroy of a preserved domain (no hv, no monitor) removes it.
	if _, e, code := run("destroy", "alpha"); code != 0 {
		t.Errorf("destroy: %d %q", code, e)
	}
	if _, e, code := run("pause", "beta"); code != 1 || !strings.Contains(e, "not running") {
		t.Errorf("pause of a dead domain: %d %q", code, e)
	}
	o, _, _ = run("list")
	if strings.Contains(o, "alpha") || !strings.Contains(o, "beta") {
		t.Errorf("after destroy: %q", o)
	}
}

// A failure is reported once, with the command's prefix; -a reports
// each domain's failure on its own line.
func TestAskReportsEachFailureOnce(t *testing.T) {
	p := toolstack.Plan{Config: &toolstack.Config{MemoryMiB: 64, VCPUs: 1}}
	withRecords(t, p, record{"a", toolstack.StateRunning}, record{"b", toolstack.StateRunning}) // with no live hv
	_, e, code := run("shutdown", "a")
	if code != 1 || strings.Count(e, "\n") != 1 || !strings.HasPrefix(e, "xl shutdown: ") || !strings.Contains(e, "not running") {
		t.Errorf("shutdown a: %d %q", code, e)
	}
	_, e, code = run("reboot", "-a")
	lines := strings.Split(strings.TrimSuffix(e, "\n"), "\n")
	if code != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], "xl reboot: ") || !strings.Contains(lines[0], "domain a ") ||
		!strings.HasPrefix(lines[1], "xl reboot: ") || !strings.Contains(lines[1], "domain b ") {
		t.Errorf("reboot -a: %d %q", code, e)
	}
}

func TestInfo(t *testing.T) {
	t.Setenv("XENO_STATE_DIR", t.TempDir())
	o, e, code := run("info")
	if code != 0 {
		t.Fatalf("info: %d %q", code, e)
	}
	for _, k := range []string{"hv_major", "hv_minor", "hv_extra", "hv_version", "hv_caps", "hv_changeset", "hv_build_id", "total_memory", "free_memory", "nr_cpus", "kvm_api_version", "xl_version"} {
		if !strings.Contains(o, "\n"+k+strings.Repeat(" ", 23-len(k))+": ") {
			t.Errorf("info lacks %s:\n%s", k, o)
		}
	}
	if !strings.Contains(o, "xeno-1.") {
		t.Errorf("hv_caps: %s", o)
	}
}

func TestParseHVVersion(t *testing.T) {
	good := "release 1.3.0-dev\ninterface 1.3-dev\nbuild_id abc\nchangeset 123456\ncaps xeno-1.3-x86_64 xeno-1.2-x86_64\nnewkey later\n"
	st, err := parseHVVersion([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if st.Build.Release.String() != "1.3.0-dev" || st.Build.BuildID != "abc" || st.Build.Changeset != "123456" ||
		st.Interface != "1.3-dev" || st.Caps != "xeno-1.3-x86_64 xeno-1.2-x86_64" {
		t.Errorf("parsed %+v", st)
	}
	for _, c := range []struct{ in, err string }{
		{strings.Replace(good, "build_id abc\n", "", 1), "no build_id"},
		{strings.Replace(good, "release 1.3.0-dev", "release 1.3", 1), "release"},
		{strings.Replace(good, "interface 1.3-dev", "interface x", 1), "interface"},
		{good + "caps again\n", "line 7: caps given twice"},
		{"release\n" + good, `line 1: "release"`},
		{"", "line 1"},
	} {
		if _, err := parseHVVersion([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: err %v, want %q", c.in, err, c.err)
		}
	}
}

// xl info reports the stamp of the hv it would run; a stand-in script
// plays the hv here (test/xl runs the real one).
func TestInfoFromHV(t *testing.T) {
	t.Setenv("XENO_STATE_DIR", t.TempDir())
	hv := filepath.Join(t.TempDir(), "hv")
	script := "#!/bin/sh\n[ \"$1\" = --version ] || exit 2\nprintf 'release 9.8.7\\ninterface 9.8\\nbuild_id otherbuild\\nchangeset cafe\\ncaps xeno-9.8-x86_64\\n'\n"
	if err := os.WriteFile(hv, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XENO_HV", hv)
	o, e, code := run("info")
	if code != 0 {
		t.Fatalf("info: %d %q", code, e)
	}
	for _, want := range []string{"hv_version             : 9.8.7\n", "hv_major               : 9\n", "hv_extra               : .7\n",
		"hv_build_id            : otherbuild\n", "hv_changeset           : cafe\n", "hv_caps                : xeno-9.8-x86_64\n",
		"hv_interface           : 9.8\n", "hv_source              : " + hv + " --version\n"} {
		if !strings.Contains(o, want) {
			t.Errorf("info lacks %q:\n%s", want, o)
		}
	}
}

func TestInfoFallback(t *testing.T) {
	t.Setenv("XENO_STATE_DIR", t.TempDir())
	missing := filepath.Join(t.TempDir(), "no-hv")
	t.Setenv("XENO_HV", missing)
	o, e, code := run("info")
	if code != 0 {
		t.Fatalf("info: %d %q", code, e)
	}
	b := abi.Current()
	if !strings.Contains(o, "hv_source              : xl's own stamp (hv --version failed: "+missing) {
		t.Errorf("no fallback note:\n%s", o)
	}
	if !strings.Contains(o, "hv_build_id            : "+b.BuildID+"\n") || !strings.Contains(o, "hv_version             : "+b.Release.String()+"\n") {
		t.Errorf("fallback is not xl's own stamp:\n%s", o)
	}
}

// xl create reads its config only if it is a regular file under the cap:
// /dev/zero made it read without end, a FIFO made it wait forever.
func TestCreateRefusesConfigThatIsNoFile(t *testing.T) {
	t.Setenv("XENO_STATE_DIR", t.TempDir())
	dir := t.TempDir()
	fifo := filepath.Join(dir, "g.cfg")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.cfg")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 1<<30); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/dev/zero": "xl create: config: /dev/zero: a character device, not a regular file",
		fifo:        "xl create: config: " + fifo + ": a FIFO, not a regular file",
		big:         "xl create: config: " + big + ": 1073741824 bytes, over the limit of 1 MiB",
	} {
		type result struct {
			stderr string
			code   int
		}
		done := make(chan result, 1)
		go func() {
			_, e, code := run("create", "-n", path)
			done <- result{e, code}
		}()
		select {
		case r := <-done:
			if r.code != 1 || !strings.Contains(r.stderr, want) {
				t.Errorf("%s: exit %d, %q; want %q", path, r.code, r.stderr, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("xl create %s: still running after 5 s", path)
		}
	}
}
func TestFlagValues(t *testing.T) {
	for _, c := range []struct {
		args    []string
		w       bool
		timeout string
		pos     string
	}{
		{[]string{"-wt", "5", "d"}, true, "5", "d"},
		{[]string{"-t5", "d", "-w"}, true, "5", "d"},
		{[]string{"d", "--timeout=7"}, false, "7", "d"},
		{[]string{"--timeout", "8", "d"}, false, "8", "d"},
		{[]string{"-t", "0", "--", "-d"}, false, "0", "-d"},
	} {
		var w bool
		var to string
		pos, err := flagValues(c.args, map[string]*bool{"w": &w}, map[string]*string{"t": &to, "timeout": &to})
		if err != nil || w != c.w || to != c.timeout || strings.Join(pos, " ") != c.pos {
			t.Errorf("%q: pos %q w %v timeout %q, %v", c.args, pos, w, to, err)
		}
	}
	for _, args := range [][]string{{"-t"}, {"-wt"}, {"--timeout"}, {"--w=1"}, {"--t", "1"}} {
		var w bool
		var to string
		if _, err := flagValues(args, map[string]*bool{"w": &w}, map[string]*string{"t": &to, "timeout": &to}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestParseTimeout(t *testing.T) {
	for s, want := range map[string]time.Duration{"0": 0, "30": 30 * time.Second, "90s": 90 * time.Second, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond} {
		if d, err := parseTimeout(s); err != nil || d != want {
			t.Errorf("%q: %v %v, want %v", s, d, err, want)
		}
	}
	for _, s := range []string{"-1", "-2s", "soon", ""} {
		if _, err := parseTimeout(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// procStartTicks is /proc/PID/stat's starttime, as the toolstack records it.
func procStartTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Skip("no /proc:", err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// A guest that ignores the power button: shutdown -w returns once -t
// has passed, with exit status 1 and a message that says so. The "hv"
// is a control socket that accepts every request and never exits.
func TestShutdownWaitTimeout(t *testing.T) {
	withRecords(t, toolstack.Plan{Config: &toolstack.Config{MemoryMiB: 64, VCPUs: 1}}, record{"deaf", toolstack.StateRunning})
	st, err := toolstack.OpenState(os.Getenv("XENO_STATE_DIR"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Find("deaf")
	if err != nil {
		t.Fatal(err)
	}
	self := procStartTicks(t, os.Getpid())
	r.HVPid, r.HVStart, r.MonitorPid, r.MonitorStart = os.Getpid(), self, os.Getpid(), self
	if err := st.Save(r); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", r.Control)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(c).ReadBytes('\n')
			_, _ = c.Write([]byte(`{"ok":true}` + "\n"))
			c.Close()
		}
	}()
	t0 := time.Now()
	_, e, code := run("shutdown", "-w", "-t", "300ms", "deaf")
	if d := time.Since(t0); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("shutdown -w -t 300ms returned after %v", d)
	}
	if code != 1 || !strings.Contains(e, "xl shutdown: toolstack: domain deaf (ID 1) still running after 300ms") || strings.Contains(e, "All domains") {
		t.Errorf("shutdown -w of a deaf guest: %d %q", code, e)
	}
	if _, e, code := run("shutdown", "-w", "-t", "soon", "deaf"); code != 2 || !strings.Contains(e, "not SECONDS") {
		t.Errorf("bad -t: %d %q", code, e)
	}
}

// xl monitor --adopt on a domain that has its monitor does nothing.
func TestMonitorAdoptNotOrphaned(t *testing.T) {
	withRecords(t, toolstack.Plan{Config: &toolstack.Config{MemoryMiB: 64, VCPUs: 1}}, record{"kept", toolstack.StateShutdown})
	if _, e, code := run("monitor", "--adopt", "kept"); code != 0 || !strings.Contains(e, "not orphaned") {
		t.Errorf("monitor --adopt of a preserved domain: %d %q", code, e)
	}
	if _, e, code := run("monitor", "kept"); code != 2 || !strings.Contains(e, "usage: xl monitor --adopt DOM") {
		t.Errorf("monitor without --adopt: %d %q", code, e)
	}
}

// network-list over a domain with no hv: every vif listed in xl's column
// order, the tap named vifDOMID.DEVID and, as no hv holds it, absent.
func TestNetworkListRecords(t *testing.T) {
	vifs := []toolstack.Vif{
		{MAC: "00:16:3e:00:00:01", Bridge: "xenbr0", IP: "10.0.0.2/24"},
		{MAC: "00:16:3e:00:00:02", Bridge: "br1", Vifname: "web0"},
	}
	withRecords(t, toolstack.Plan{Config: &toolstack.Config{MemoryMiB: 64, VCPUs: 1, Vifs: vifs}},
		record{"net", toolstack.StateShutdown}, record{"nonet", toolstack.StateShutdown})
	o, e, code := run("network-list", "net")
	lines := strings.Split(strings.TrimSpace(o), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("network-list: %d %q %q", code, o, e)
	}
	for i, want := range []string{
		"Idx BE Mac Addr. handle state tap bridge ip rx-pkts/bytes tx-pkts/bytes",
		"0 - 00:16:3e:00:00:01 0 no-tap vif1.0 xenbr0 10.0.0.2/24 - -",
		"1 - 00:16:3e:00:00:02 1 no-tap web0 br1 - - -",
	} {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want {
			t.Errorf("line %d: %q, want %q", i, got, want)
		}
	}
	if _, e, code := run("network-list"); code != 2 || !strings.Contains(e, "usage") {
		t.Errorf("no domain: %d %q", code, e)
	}
	if _, e, code := run("network-list", "nosuch"); code != 1 || !strings.Contains(e, "nosuch") {
		t.Errorf("missing domain: %d %q", code, e)
	}
}

// --allow-unjailed takes layer names only: anything else is a usage
// error before the config is read.
func TestCreateAllowUnjailedFlag(t *testing.T) {
	_, e, code := run("create", "--allow-unjailed=cgroup,seccomp", "/nonexistent.cfg")
	if code != 2 || !strings.Contains(e, `"seccomp" is not a layer (want namespaces, root, uid, cgroup or all)`) {
		t.Errorf("bad layer: %d %q", code, e)
	}
	_, e, code = run("create", "--allow-unjailed", "cgroup", "/nonexistent.cfg")
	if code != 1 || !strings.Contains(e, "/nonexistent.cfg") {
		t.Errorf("good layer, missing config: %d %q", code, e)
	}
}
