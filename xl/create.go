package xl

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/internal/hostfile"
	"github.com/xeno-hv/xeno/kernels"
	"github.com/xeno-hv/xeno/toolstack"
	"github.com/xeno-hv/xeno/toolstack/xlcfg"
)

const commandLine = "command line"

// loadConfig parses CFG and the KEY=VALUE overrides (each one an xl.cfg
// line applied after the file, as xl create does) and resolves it.
func loadConfig(io IO, path string, overrides []string) (*toolstack.Config, error) {
	// A FIFO or /dev/zero as the config must neither hang nor fill
	// memory: only a regular file under the cap is read.
	src, err := hostfile.ReadRegular(path, hostfile.MaxConfig)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := xlcfg.Parse(path, src)
	if err != nil {
		return nil, err
	}
	for _, o := range overrides {
		if err := c.Parse(commandLine, []byte(o)); err != nil {
			return nil, err
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	cfg, warns, err := toolstack.Resolve(c, toolstack.ResolveOptions{
		Dir:          filepath.Dir(abs),
		CommandLine:  commandLine,
		LookupKernel: lookupKernel,
	})
	for _, w := range warns {
		fmt.Fprintln(io.Stderr, w)
	}
	if err != nil {
		return nil, err
	}
	cfg.Source = abs
	return cfg, nil
}

// lookupKernel finds a release in the kernel store ($XENO_CACHE).
func lookupKernel(release string) (string, error) {
	s, err := kernels.Open(kernels.DefaultCacheDir())
	if err != nil {
		return "", err
	}
	k, err := s.Get(release)
	if err != nil {
		return "", err
	}
	return k.BzImagePath(), nil
}

func createCmd(io IO, args []string) error {
	var console, paused, fg, dry, dryLong, unchecked, quiet bool
	var allowUnjailed string
	pos, err := flagValues(args, map[string]*bool{
		"c": &console, "p": &paused, "F": &fg, "n": &dry, "dryrun": &dryLong,
		"unchecked-interface": &unchecked, "q": &quiet,
	}, map[string]*string{"allow-unjailed": &allowUnjailed})
	if err != nil {
		return err
	}
	unjailed, err := toolstack.ParseAllowUnjailed(allowUnjailed)
	if err != nil {
		return usagef("%v", err)
	}
	dry = dry || dryLong
	if len(pos) == 0 {
		return usagef("no config file")
	}
	cfgPath, overrides := pos[0], pos[1:]
	for _, o := range overrides {
		if !strings.Contains(o, "=") {
			return usagef("%q is not a KEY=VALUE override", o)
		}
	}
	cfg, err := loadConfig(io, cfgPath, overrides)
	if err != nil {
		return err
	}
	host, err := toolstack.ReadHost()
	if err != nil {
		return err
	}
	plan, refusal := toolstack.Check(cfg, toolstack.CheckOptions{Build: abi.Current(), Host: host, Unchecked: unchecked})
	for _, w := range plan.Warnings {
		fmt.Fprintf(io.Stderr, "xl create: warning: %s\n", w)
	}
	if dry {
		printPlan(io, plan)
		if refusal != nil {
			return refusal
		}
		return nil
	}
	if refusal != nil {
		return refusal
	}
	ts, err := open()
	if err != nil {
		return err
	}
	// An orphan that has ended may free the name, or restart under it.
	if _, err := selected(io, ts, nil); err != nil {
		return err
	}
	plan.AllowUnjailed = unjailed
	rec, err := ts.Reserve(plan)
	if err != nil {
		return err
	}
	opt := toolstack.CreateOptions{Paused: paused}
	if fg {
		// -F: this process is the monitor; it returns when the domain
		// is gone (or preserved).
		started := make(chan struct{})
		stop := handOverOnSignal(io, ts, rec, started)
		defer stop()
		return ts.Monitor(rec.ID, opt, func(err error) {
			if err == nil {
				close(started)
				if !quiet {
					fmt.Fprintf(io.Stderr, "Started domain %s (id=%d)\n", rec.Name, rec.ID)
				}
			}
		})
	}
	if err := ts.StartMonitor(rec, opt); err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintf(io.Stderr, "Started domain %s (id=%d)\n", rec.Name, rec.ID)
	}
	if console {
		return attach(io, ts, strconv.Itoa(rec.ID))
	}
	return nil
}

// handOverOnSignal makes Ctrl-C (or SIGTERM, SIGHUP) of xl create -F
// leave the domain running under a detached monitor, as if it had been
// created without -F: the guest is not the terminal's to kill (its hv
// has a session of its own), and a domain without a monitor would have
// its end seen only by the next xl command. Before the domain has
// started, a signal ends xl as it always did.
func handOverOnSignal(io IO, ts *toolstack.Toolstack, rec *toolstack.Record, started <-chan struct{}) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case sig := <-sigs:
			select {
			case <-started:
			default:
				os.Exit(128 + int(sig.(unix.Signal)))
			}
			if err := ts.HandOver(rec.ID); err != nil {
				fmt.Fprintf(io.Stderr, "xl create: %v; domain %s (id=%d) runs on without a monitor until the next xl command adopts it\n", err, rec.Name, rec.ID)
			} else {
				fmt.Fprintf(io.Stderr, "xl create: domain %s (id=%d) runs on, handed over to a background monitor\n", rec.Name, rec.ID)
			}
			os.Exit(128 + int(sig.(unix.Signal)))
		}
	}()
	return func() { signal.Stop(sigs); close(done) }
}

// printPlan is xl create -n's output: the resolved config as JSON, then
// one line per check and the interface decision with its rule.
func printPlan(io IO, p *toolstack.Plan) {
	b, _ := json.MarshalIndent(p.Config, "", "  ")
	fmt.Fprintf(io.Stdout, "%s\n", b)
	for _, c := range p.Checks {
		verdict := "ok"
		if !c.OK {
			verdict = "REFUSED"
		}
		fmt.Fprintf(io.Stdout, "check %-10s %-7s %s\n", c.Check, verdict, c.Detail)
	}
	if p.Verdict != "" {
		fmt.Fprintf(io.Stdout, "interface: guest %s (declared by %s), hv %s: %s, rule %s\n", p.Guest, p.Declared, p.HV, p.Verdict, p.Rule)
		fmt.Fprintf(io.Stdout, "decision: %s\n", p.Reason)
	}
}

// monitorCmd is `xl __monitor [-p] [--restore FILE|fd=FD] ID`, the
// monitor xl create, xl restore and xl migrate-receive (a stream on FD)
// start,
// and `xl __monitor --adopt ID`, the one that takes over a domain whose
// monitor died.
func monitorCmd(io IO, args []string) error {
	var paused, adopt, handover bool
	var restore string
	pos, err := flagValues(args, map[string]*bool{"p": &paused, "adopt": &adopt, "handover": &handover},
		map[string]*string{"restore": &restore})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one domain ID")
	}
	id, err := strconv.Atoi(pos[0])
	if err != nil {
		return usagef("bad ID %q", pos[0])
	}
	ts, err := open()
	if err != nil {
		return err
	}
	// fd 3 is the creator's readiness pipe: "ok\n" or the error. It
	// was inherited without close-on-exec; the hv must not inherit it, or
	// the creator would wait for the hv to end.
	unix.CloseOnExec(3)
	ready := os.NewFile(3, "ready")
	tell := func(err error) {
		if ready == nil {
			return
		}
		if err != nil {
			fmt.Fprintln(ready, err)
		} else {
			fmt.Fprint(ready, "ok\n")
		}
		ready.Close()
	}
	if adopt && handover {
		// The monitor handing over is the parent that started us.
		return ts.TakeOver(id, os.Getppid(), tell)
	}
	if adopt {
		return ts.Adopt(id, tell)
	}
	opt := toolstack.CreateOptions{Paused: paused, Restore: restore}
	if v, ok := strings.CutPrefix(restore, "fd="); ok {
		fd, err := strconv.Atoi(v)
		if err != nil || fd <= 3 {
			return usagef("--restore %s: want a file or fd=FD, a descriptor after the readiness pipe", restore)
		}
		// Like the readiness pipe: the hv gets it as one of its
		// ExtraFiles, not by inheritance.
		unix.CloseOnExec(fd)
		opt.Restore, opt.Stream = "", os.NewFile(uintptr(fd), "snapshot stream")
		defer opt.Stream.Close()
	}
	return ts.Monitor(id, opt, tell)
}

// adoptCmd is `xl monitor --adopt DOM`: it gives a domain whose monitor
// died a new one, as any xl command that touches the domain does.
func adoptCmd(io IO, args []string) error {
	var adopt bool
	pos, err := flags(args, map[string]*bool{"adopt": &adopt})
	if err != nil {
		return err
	}
	if !adopt || len(pos) != 1 {
		return usagef("want --adopt and one DOM")
	}
	ts, err := open()
	if err != nil {
		return err
	}
	r, err := ts.State.Find(pos[0])
	if err != nil {
		return err
	}
	if !r.Orphaned() {
		fmt.Fprintf(io.Stderr, "Domain %s (id=%d) is not orphaned (state %s, monitor pid %d): nothing to adopt\n", r.Name, r.ID, r.State, r.MonitorPid)
		return nil
	}
	if err := ts.StartAdopter(r.ID); err != nil {
		return err
	}
	fmt.Fprintf(io.Stderr, "Adopted domain %s (id=%d)\n", r.Name, r.ID)
	return nil
}
