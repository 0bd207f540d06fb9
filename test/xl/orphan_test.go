package xl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
)

// record is a domain's record.json, for what xl list -l does not show.
type record struct {
	ID         int    `json:"id"`
	State      string `json:"state"`
	HVPid      int    `json:"hv_pid"`
	MonitorPid int    `json:"monitor_pid"`
	ExitReason string `json:"exit_reason"`
	ExitDetail string `json:"exit_detail"`
	Restarts   int    `json:"restarts"`
}

func (e *env) record(id int) record {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.state, "domains", strconv.Itoa(id), "record.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// gone reports whether pid has ended (a zombie counts as ended).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// killMonitor kills domain id's monitor with SIGKILL and waits until it
// is gone; its hv runs on. It returns the record. No xl command runs, as
// one would adopt the domain.
func (e *env) killMonitor(id int) record {
	e.t.Helper()
	r := e.record(id)
	name := strconv.Itoa(id)
	if r.MonitorPid <= 0 || r.HVPid <= 0 {
		e.t.Fatalf("domain %d: no monitor or hv pid: %+v", id, r)
	}
	if err := syscall.Kill(r.MonitorPid, syscall.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
	e.waitFor("the monitor of "+name+" to die", 10*time.Second, func() bool { return gone(r.MonitorPid) })
	if gone(r.HVPid) {
		e.t.Fatalf("%s: the hv died with its monitor", name)
	}
	return r
}

// pressButton presses the ACPI power button straight through the
// control socket, as the hv's own client: no xl command touches the
// domain, so nothing adopts it before its guest powers off.
func (e *env) pressButton(id int) {
	e.t.Helper()
	sock := filepath.Join(e.state, "domains", strconv.Itoa(id), "hv", "control.sock")
	if _, err := control.Call(sock, control.CmdShutdown, 3*time.Second); err != nil {
		e.t.Fatal(err)
	}
}

// The monitor is killed with -9 and the guest then powers off while no
// xl command looks: the next xl list adopts the domain and applies the
// real reason, poweroff, by on_poweroff (preserve: shut down, not
// crashed; restart: a new domain). A domain adopted while it runs is
// shut down by xl shutdown -w, which returns. So is one whose
// xl create -F was interrupted.
func TestOrphanAdopted(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "powerbutton")
	cfg := e.write("o.cfg", fmt.Sprintf("kernel = %q\nmemory = 32\n", k))
	doms := []struct{ name, onPoweroff string }{{"pres", "preserve"}, {"rest", "restart"}, {"live", "destroy"}}
	for _, d := range doms {
		e.mustRun("create", cfg, `name="`+d.name+`"`, `on_poweroff="`+d.onPoweroff+`"`)
	}
	var wg sync.WaitGroup
	for _, d := range doms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.consoleUntil(d.name, "XTF powerbutton waiting", 30*time.Second)
		}()
	}
	wg.Wait()
	ids := map[string]int{}
	for _, d := range e.list() {
		ids[d.Name] = d.ID
	}
	recs := map[string]record{}
	for _, d := range doms {
		recs[d.name] = e.killMonitor(ids[d.name])
	}

	// The guests power off with nobody watching.
	for _, name := range []string{"pres", "rest"} {
		r := recs[name]
		e.pressButton(r.ID)
		e.waitFor("the hv of "+name+" to end", 10*time.Second, func() bool { return gone(r.HVPid) })
	}
	l := map[string]listed{}
	for _, d := range e.list() {
		l[d.Name] = d
	}
	if d := l["pres"]; d.State != "---s--" || d.RecState != "shutdown" || d.ExitReson != control.ReasonPoweroff {
		t.Errorf("pres (on_poweroff=preserve) after a poweroff with its monitor dead: %+v", d)
	}
	if d := l["rest"]; d.ID == recs["rest"].ID || d.Restarts != 1 {
		t.Errorf("rest (on_poweroff=restart) after a poweroff with its monitor dead: %+v, was ID %d", d, recs["rest"].ID)
	}
	e.waitFor("rest's new hv", 30*time.Second, func() bool {
		d := e.find("rest")
		return d != nil && d.RecState == "running" && d.HVPid > 0 && d.HVPid != recs["rest"].HVPid
	})
	// The restarted domain has a live monitor: the adopter.
	if r := e.record(e.find("rest").ID); r.MonitorPid <= 0 || gone(r.MonitorPid) {
		t.Errorf("restarted domain without a live monitor: %+v", r)
	}

	// live was adopted by that xl list while it ran; its guest acts on
	// the button and the adopter applies on_poweroff=destroy.
	if r := e.record(recs["live"].ID); r.MonitorPid == recs["live"].MonitorPid || gone(r.MonitorPid) {
		t.Errorf("live not adopted by xl list: %+v", r)
	}
	o, errs, code := e.run("shutdown", "-w", "live")
	if code != 0 || !strings.Contains(errs, "All domains have been shut down") {
		t.Errorf("shutdown -w of an adopted domain: %d %s %s", code, o, errs)
	}
	if d := e.find("live"); d != nil {
		t.Errorf("live still listed: %+v", d)
	}

	// Ctrl-C of xl create -F: the hv runs on, handed over at once to a
	// detached monitor (no xl command has to adopt it); xl shutdown -w
	// shuts it down and returns.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := e.cmd(ctx, "create", "-F", cfg, `name="fg"`)
	var mu sync.Mutex
	var out bytes.Buffer
	c.Stderr = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitFor("xl create -F to start the domain", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(out.String(), "Started domain fg")
	})
	e.consoleUntil("fg", "XTF powerbutton waiting", 30*time.Second)
	fg := e.record(e.find("fg").ID)
	_ = c.Process.Signal(syscall.SIGINT)
	_ = c.Wait()
	if gone(fg.HVPid) {
		t.Fatal("Ctrl-C of xl create -F stopped the hv")
	}
	mu.Lock()
	said := out.String()
	mu.Unlock()
	if !strings.Contains(said, "domain fg (id=") || !strings.Contains(said, "handed over to a background monitor") {
		t.Errorf("xl create -F said on Ctrl-C:\n%s", said)
	}
	if r := e.record(fg.ID); r.MonitorPid <= 0 || r.MonitorPid == c.Process.Pid || gone(r.MonitorPid) {
		t.Errorf("after Ctrl-C of create -F the domain has no live monitor: %+v (xl create -F was pid %d)", r, c.Process.Pid)
	}
	o, errs, code = e.run("shutdown", "-w", "-t", "30", "fg")
	if code != 0 || e.find("fg") != nil {
		t.Errorf("shutdown -w after Ctrl-C of create -F: %d %s %s", code, o, errs)
	}

	e.mustRun("destroy", "pres")
	e.mustRun("destroy", "rest")
	e.assertClean()
}

// A guest that ignores the power button: xl shutdown -w gives up after
// -t with exit status 1 and says so; the domain runs on.
func TestShutdownWaitTimeout(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "shutdown") // xtf.how=none: halts with interrupts off
	cfg := e.write("deaf.cfg", fmt.Sprintf("name = \"deaf\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=none\"\n", k))
	e.mustRun("create", cfg)
	t0 := time.Now()
	_, errs, code := e.run("shutdown", "-w", "-t", "1", "deaf")
	took := time.Since(t0)
	if code != 1 || !strings.Contains(errs, "xl shutdown: toolstack: domain deaf") || !strings.Contains(errs, "still running after 1s") ||
		strings.Contains(errs, "All domains") {
		t.Errorf("shutdown -w -t 1 of a guest that ignores the button: exit %d: %s", code, errs)
	}
	if took < time.Second || took > 10*time.Second {
		t.Errorf("shutdown -w -t 1 returned after %v", took)
	}
	if d := e.find("deaf"); d == nil || d.RecState != "running" {
		t.Errorf("the domain did not run on: %+v", d)
	}
	e.mustRun("destroy", "deaf")
	e.assertClean()
}
