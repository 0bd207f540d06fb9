package versions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/initd"
	"github.com/xeno-hv/xeno/internal/testenv"
)

const abiPkg = "github.com/xeno-hv/xeno/hv/abi"

type hvBuild struct {
	Label   string // the column of the table
	Release string
	BuildID string
	Bin     string // directory with hv and xl stamped as this build
}

type guestCase struct {
	Label string
	Iface string // what the guest declares (interface = ...)
}

// The expected table of docs/versions.md, row by row.
var want = map[string]map[string]abi.Verdict{
	"1.1":     {"1.2.0": abi.Compat, "1.2.3": abi.Compat, "1.3.0-dev same": abi.Compat, "1.3.0-dev other": abi.Compat},
	"1.2":     {"1.2.0": abi.Run, "1.2.3": abi.Run, "1.3.0-dev same": abi.Compat, "1.3.0-dev other": abi.Compat},
	"1.3-dev": {"1.2.0": abi.Refuse, "1.2.3": abi.Refuse, "1.3.0-dev same": abi.Run, "1.3.0-dev other": abi.Refuse},
}

var (
	buildOnce sync.Once
	builds    []hvBuild
	guests    []guestCase
	buildErr  error
)

func root(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

// setup builds hv and xl four times, stamped as each column of the table.
// The dev guest is built against the "same" 1.3.0-dev build: its build id
// is the one scripts/buildid.sh gives this tree as 1.3.0-dev, exactly what
// the builder records for a recipe pinned to that release.
func setup(t *testing.T) ([]hvBuild, []guestCase) {
	t.Helper()
	if os.Getenv("XENO_BIN") == "" {
		t.Skip("XENO_BIN is not set; run `make test` (this test stamps its own hv and xl builds)")
	}
	buildOnce.Do(func() {
		if dir := testenv.Carried("versions"); dir != "" {
			// Inside the nested lab, which has no go: the builds the
			// run outside made, at the same paths.
			buildErr = readBuilds(dir)
			return
		}
		dir, err := os.MkdirTemp("", "xeno-versions-")
		if err != nil {
			buildErr = err
			return
		}
		top := root(t)
		id := func(rel string) string {
			out, err := exec.Command("sh", filepath.Join(top, "scripts/buildid.sh"), rel).Output()
			if err != nil {
				buildErr = fmt.Errorf("buildid.sh %s: %w", rel, err)
			}
			return strings.TrimSpace(string(out))
		}
		same := id("1.3.0-dev")
		builds = []hvBuild{
			{Label: "1.2.0", Release: "1.2.0", BuildID: id("1.2.0")},
			{Label: "1.2.3", Release: "1.2.3", BuildID: id("1.2.3")},
			{Label: "1.3.0-dev same", Release: "1.3.0-dev", BuildID: same},
			// Another dev build of the same line: what a developer's
			// tree one commit later would stamp.
			{Label: "1.3.0-dev other", Release: "1.3.0-dev", BuildID: "0ther" + same[5:]},
		}
		guests = []guestCase{{"1.1", "1.1"}, {"1.2", "1.2"}, {"1.3-dev", "1.3-dev@" + same}}
		for i := range builds {
			b := &builds[i]
			b.Bin = filepath.Join(dir, strings.ReplaceAll(b.Label, " ", "-"))
			for _, cmd := range []string{"hv", "xl"} {
				ld := fmt.Sprintf("-buildid= -X %s.release=%s -X %s.buildID=%s -X %s.changeset=matrix", abiPkg, b.Release, abiPkg, b.BuildID, abiPkg)
				c := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ld, "-o", filepath.Join(b.Bin, cmd), "./cmd/"+cmd)
				c.Dir = top
				c.Env = append(os.Environ(), "CGO_ENABLED=0")
				if out, err := c.CombinedOutput(); err != nil {
					buildErr = fmt.Errorf("building %s as %s: %v\n%s", cmd, b.Label, err, out)
					return
				}
			}
		}
		buildErr = writeBuilds(dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builds, guests
}

// writeBuilds records builds and guests in dir and carries dir into the
// nested lab, where readBuilds finds them.
func writeBuilds(dir string) error {
	b, err := json.Marshal(carried{builds, guests})
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "builds.json"), b, 0o644)
	}
	if err == nil {
		err = testenv.Carry("versions", dir)
	}
	return err
}

func readBuilds(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "builds.json"))
	if err != nil {
		return err
	}
	var c carried
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	builds, guests = c.Builds, c.Guests
	return nil
}

type carried struct {
	Builds []hvBuild
	Guests []guestCase
}

func guestKernel(t *testing.T) string {
	t.Helper()
	return testenv.Guest(t, "cpuid")
}

func writeCfg(t *testing.T, dir, name, iface, kernel string) string {
	t.Helper()
	cfg := fmt.Sprintf("name = %q\ntype = \"pvh\"\nkernel = %q\nmemory = 32\nvcpus = 1\ninterface = %q\non_poweroff = \"destroy\"\n", name, kernel, iface)
	p := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func xl(t *testing.T, b hvBuild, state string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, filepath.Join(b.Bin, "xl"), args...)
	c.Env = append(os.Environ(), "XENO_STATE_DIR="+state, "XENO_HV="+filepath.Join(b.Bin, "hv"))
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("xl %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// TestMatrixToolstack is the first pass: xl, stamped as each hv release,
// decides every cell before anything starts. Dry runs show the decision
// and its rule; real creates of refused cells must fail, name the guest's
// interface, the hv's release and the rule, and leave no record behind.
func TestMatrixToolstack(t *testing.T) {
	hvs, gs := setup(t)
	kernel := guestKernel(t)
	for _, g := range gs {
		for _, b := range hvs {
			g, b := g, b
			verdict := want[g.Label][b.Label]
			t.Run(g.Label+" on "+b.Label, func(t *testing.T) {
				dir := t.TempDir()
				state := filepath.Join(dir, "state")
				cfg := writeCfg(t, dir, "m", g.Iface, kernel)
				out, errOut, code := xl(t, b, state, "create", "-n", cfg)
				line := ""
				for _, l := range strings.Split(out+errOut, "\n") {
					if strings.HasPrefix(l, "interface:") {
						line = l
					}
				}
				if line == "" {
					t.Fatalf("dry run shows no interface decision (exit %d)\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
				}
				if !strings.Contains(line, ": "+verdict.String()+",") {
					t.Errorf("dry run decided %q, want %s", line, verdict)
				}
				if verdict != abi.Refuse {
					if code != 0 {
						t.Errorf("dry run of an admitted guest exited %d\n%s%s", code, out, errOut)
					}
					return
				}
				if code == 0 {
					t.Errorf("dry run of a refused guest exited 0")
				}
				_, errOut, code = xl(t, b, state, "create", cfg)
				if code == 0 {
					t.Fatalf("xl create of a refused guest succeeded")
				}
				for _, must := range []string{strings.Split(g.Iface, "@")[0], b.Release, "rule "} {
					if !strings.Contains(errOut, must) {
						t.Errorf("refusal %q does not name %q", errOut, must)
					}
				}
				assertNothingLeft(t, b, state)
			})
		}
	}
}

// assertNothingLeft checks that xl lists no domain and the state dir holds
// no domain record.
func assertNothingLeft(t *testing.T, b hvBuild, state string) {
	t.Helper()
	out, errOut, code := xl(t, b, state, "list")
	if code != 0 {
		t.Fatalf("xl list: exit %d: %s", code, errOut)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if !strings.HasPrefix(l, "Domain-0") && strings.TrimSpace(l) != "" {
			t.Errorf("refused domain left a record: %q", l)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(state, "domains"))
	if len(entries) != 0 {
		t.Errorf("refused domain left %d entries under %s/domains", len(entries), state)
	}
}

// report is what the cpuid micro-guest printed: the xeno CPUID leaves and
// every info selector it could read.
type report struct {
	cpuid map[string]map[string]uint64
	info  map[int]string
}

func runCPUIDGuest(t *testing.T, b hvBuild, args ...string) report {
	t.Helper()
	var stdout, stderr bytes.Buffer
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		sock := filepath.Join(t.TempDir(), "control.sock")
		all := append([]string{"--kernel", guestKernel(t), "--memory", "32", "--control", sock}, args...)
		c := exec.CommandContext(ctx, filepath.Join(b.Bin, "hv"), all...)
		testenv.QuitOnCancel(c)
		stdout.Reset()
		stderr.Reset()
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		timedOut := ctx.Err() != nil
		cancel()
		if testenv.LabLoss(t, try, timedOut, stderr.String()) {
			continue
		}
		if err != nil || !strings.Contains(stdout.String(), "XTF RESULT cpuid PASS") {
			t.Fatalf("hv %s %v: %v\nstdout:\n%s\nstderr:\n%s", b.Label, args, err, stdout.String(), stderr.String())
		}
		break
	}
	rep := report{cpuid: map[string]map[string]uint64{}, info: map[int]string{}}
	for _, l := range strings.Split(stdout.String(), "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "XTF cpuid "):
			f := strings.Fields(l)
			regs := map[string]uint64{}
			for _, kv := range f[3:] {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseUint(v, 16, 64)
				regs[k] = n
			}
			rep.cpuid[f[2]] = regs
		case strings.HasPrefix(l, "XTF info sel="):
			rest := strings.TrimPrefix(l, "XTF info sel=")
			sel, _ := strconv.ParseUint(rest[:2], 16, 8)
			if _, v, ok := strings.Cut(rest, " val="); ok {
				rep.info[int(sel)] = v
			}
		}
	}
	return rep
}

// TestMatrixGuest is the second pass. The toolstack's check is bypassed
// (the hv runs with --unchecked-interface and presents its own interface),
// so the guest's own runtime check is what decides: the micro-guest reads
// the hv's release, build id and caps through the info port, and
// xeno-init's decision function, applied to exactly what it read, must
// reproduce the table. For every admitted cell the hv is then started the
// normal way, and the micro-guest must see exactly the admitted interface:
// CPUID 0x40000101 EDX and the compat flag, the info port's interface item,
// and no selector newer than that interface.
func TestMatrixGuest(t *testing.T) {
	hvs, gs := setup(t) // first: the lab cannot build them
	testenv.RequireKVM(t)
	for _, g := range gs {
		for _, b := range hvs {
			g, b := g, b
			verdict := want[g.Label][b.Label]
			t.Run(g.Label+" on "+b.Label, func(t *testing.T) {
				pinned, err := abi.ParseInterface(g.Iface)
				if err != nil {
					t.Fatal(err)
				}
				rep := runCPUIDGuest(t, b, "--interface", g.Iface, "--unchecked-interface")
				h := initd.HVInfo{Release: rep.info[abi.SelRelease], BuildID: rep.info[abi.SelBuildID], Caps: rep.info[abi.SelCaps], Admitted: rep.info[abi.SelInterface]}
				if h.Release != b.Release || h.BuildID != b.BuildID {
					t.Fatalf("info port says release %q build %q, hv is %s build %s", h.Release, h.BuildID, b.Release, b.BuildID)
				}
				d, err := initd.Decide(pinned, h)
				if err != nil {
					t.Fatal(err)
				}
				if d.Verdict != verdict {
					t.Fatalf("guest-side decision %s (%s), want %s", d.Verdict, d.Reason, verdict)
				}
				if verdict == abi.Refuse {
					line := initd.RefuseLine(pinned, h, d)
					for _, must := range []string{pinned.Short(), b.Release, d.Rule} {
						if !strings.Contains(line, must) {
							t.Errorf("refusal line %q does not name %q", line, must)
						}
					}
					return
				}
				rep = runCPUIDGuest(t, b, "--interface", g.Iface)
				ver := rep.cpuid["40000101"]
				if ver == nil {
					t.Fatal("guest printed no CPUID 0x40000101 line")
				}
				admitted := abi.Interface{Major: pinned.Major, Minor: pinned.Minor}
				if got := uint32(ver["edx"]); got != admitted.Word() {
					t.Errorf("CPUID 0x40000101 EDX = %#x, want admitted %s (%#x)", got, admitted.Short(), admitted.Word())
				}
				compat := ver["ecx"]&abi.CPUIDFlagCompat != 0
				if compat != (verdict == abi.Compat) {
					t.Errorf("compat flag %v in ECX %#x, want %v", compat, ver["ecx"], verdict == abi.Compat)
				}
				if got := strings.Fields(rep.info[abi.SelInterface]); len(got) == 0 || got[0] != pinned.Short() && got[0] != admitted.Short() {
					t.Errorf("info interface item %q, want %s", rep.info[abi.SelInterface], admitted.Short())
				}
				_, uptime := rep.info[abi.SelUptime]
				if uptime != abi.Has(admitted, abi.FeatInfoUptime) {
					t.Errorf("uptime selector offered=%v to a %s guest", uptime, admitted.Short())
				}
			})
		}
	}
}
