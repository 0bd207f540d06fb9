// Package xl is the xl command table: each command's flags, usage and
// output format. Everything it does goes through the toolstack package.
package xl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/xeno-hv/xeno/toolstack"
)

// IO is where a command reads and writes; tests give buffers.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

type command struct {
	name    string
	usage   string // after "xl NAME "
	summary string
	run     func(io IO, args []string) error
	hidden  bool
}

// usageError makes the command print its usage; exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func commands() []command {
	return []command{
		{name: "create", usage: "[-c] [-p] [-F] [-n|--dryrun] [-q] [--unchecked-interface] [--allow-unjailed=LAYER,...] CFG [KEY=VALUE ...]", summary: "create a domain from an xl.cfg file (jailed; --allow-unjailed: namespaces, root, uid, cgroup or all)", run: createCmd},
		{name: "destroy", usage: "DOM", summary: "stop a domain immediately and forget it", run: destroyCmd},
		{name: "shutdown", usage: "[-w] [-t SECONDS] [-F] DOM | -a [-w] [-t SECONDS]", summary: "ask a domain (or all, -a) to power off; -w waits, at most -t (default 60 s, 0: for ever)", run: shutdownCmd},
		{name: "reboot", usage: "[-w] [-t SECONDS] [-F] DOM | -a [-w] [-t SECONDS] [-F]", summary: "ask a domain (or all, -a) to reboot; -w waits as for shutdown, -F resets without asking", run: rebootCmd},
		{name: "pause", usage: "DOM", summary: "pause a domain's vCPUs", run: pauseCmd},
		{name: "unpause", usage: "DOM", summary: "resume a paused domain", run: unpauseCmd},
		{name: "list", usage: "[-l] [-v] [DOM ...]", summary: "list domains (-l: JSON, -v: UUID and interface)", run: listCmd},
		{name: "network-list", usage: "DOM [DOM ...]", summary: "list a domain's network devices (vifs)", run: networkListCmd},
		{name: "console", usage: "DOM", summary: "attach to a domain's console (escape: ^])", run: consoleCmd},
		{name: "uptime", usage: "[DOM ...]", summary: "show how long domains have run", run: uptimeCmd},
		{name: "domid", usage: "NAME", summary: "print a domain's ID", run: domidCmd},
		{name: "domname", usage: "ID", summary: "print a domain's name", run: domnameCmd},
		{name: "info", usage: "", summary: "show the hypervisor and host", run: infoCmd},
		{name: "query", usage: "DOM interface|health", summary: "ask the guest's xeno-init over vsock: its interface line, or its health", run: queryCmd},
		{name: "monitor", usage: "--adopt DOM", summary: "give a domain whose monitor died a new one", run: adoptCmd},
		{name: "help", usage: "[COMMAND]", summary: "show help", run: nil},
		{name: "save", usage: "[-c] [-p] DOM FILE [CFG]", summary: "save a domain's state to FILE and end it (-c: it runs on, -p: it stays paused)", run: saveCmd},
		{name: "restore", usage: "[-p] [-c] [-e] [CFG] FILE", summary: "start a domain saved by xl save, under a new ID (-p: paused, -c: attach the console)", run: restoreCmd},
		{name: "migrate", usage: "[-s SSHCOMMAND] [--debug] DOM HOST", summary: "move a domain to HOST through `SSHCOMMAND HOST xl migrate-receive` (not live: paused while sent)", run: migrateCmd},
		{name: "migrate-receive", usage: "", summary: "the receiving end of xl migrate: the stream on stdin, the answer on stdout", run: migrateReceiveCmd},
		{name: "__monitor", usage: "[-p] [--restore FILE] ID | --adopt ID", summary: "internal: the per-domain monitor", run: monitorCmd, hidden: true},
	}
}

// Main runs xl with args (without the program name) and returns the exit
// status: 0 success, 1 failure, 2 usage error.
func Main(args []string, io IO) int {
	cmds := commands()
	if len(args) == 0 {
		help(io.Stderr, cmds)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		if len(args) > 1 {
			for _, c := range cmds {
				if c.name == args[1] && !c.hidden {
					fmt.Fprintf(io.Stdout, "usage: xl %s %s\n  %s\n", c.name, c.usage, c.summary)
					return 0
				}
			}
			fmt.Fprintf(io.Stderr, "xl: no command %q\n", args[1])
			return 2
		}
		help(io.Stdout, cmds)
		return 0
	}
	for _, c := range cmds {
		if c.name != name || c.run == nil {
			continue
		}
		rest := args[1:]
		for _, a := range rest {
			if a == "-h" || a == "--help" {
				fmt.Fprintf(io.Stdout, "usage: xl %s %s\n  %s\n", c.name, c.usage, c.summary)
				return 0
			}
		}
		err := c.run(io, rest)
		if err == nil {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(io.Stderr, "xl %s: %s\nusage: xl %s %s\n", c.name, ue.msg, c.name, c.usage)
			return 2
		}
		// A command that acts on several domains joins their
		// failures: one line each, every one with the prefix.
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			fmt.Fprintf(io.Stderr, "xl %s: %v\n", c.name, e)
		}
		return 1
	}
	fmt.Fprintf(io.Stderr, "xl: unknown command %q; try `xl help`\n", name)
	return 2
}

func help(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "usage: xl COMMAND [ARGS]")
	fmt.Fprintln(w)
	for _, c := range cmds {
		if !c.hidden {
			fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "DOM is a domain name or numeric ID. Domains live in $XENO_STATE_DIR (default /run/xeno).")
}

// flags parses xl's getopt-style boolean flags anywhere among args:
// "-cp" is "-c -p", long flags are "--name", "--" ends the flags.
// known maps a flag ("c", "dryrun") to where it is stored.
func flags(args []string, known map[string]*bool) ([]string, error) {
	return flagValues(args, known, nil)
}

// flagValues is flags with options that take an argument, as getopt
// reads them: values maps such an option ("t", "timeout") to where its
// argument is stored. A short one takes the rest of its cluster or the
// next argument ("-t5", "-wt 5", "-t 5"); a long one "=VALUE" or the
// next argument.
func flagValues(args []string, known map[string]*bool, values map[string]*string) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		// next takes the following argument as option opt's value.
		next := func(opt string) (string, error) {
			if i+1 >= len(args) {
				return "", usagef("option %s needs a value", opt)
			}
			i++
			return args[i], nil
		}
		switch {
		case a == "--":
			return append(pos, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			if v, ok := values[name]; ok && len(name) > 1 {
				if !hasVal {
					var err error
					if val, err = next(a); err != nil {
						return nil, err
					}
				}
				*v = val
				continue
			}
			p, ok := known[name]
			if !ok || len(name) < 2 || hasVal {
				return nil, usagef("unknown option %s", a)
			}
			*p = true
		case strings.HasPrefix(a, "-") && len(a) > 1:
		cluster:
			for j, ch := range a[1:] {
				if v, ok := values[string(ch)]; ok {
					val := a[1+j+utf8.RuneLen(ch):]
					if val == "" {
						var err error
						if val, err = next("-" + string(ch)); err != nil {
							return nil, err
						}
					}
					*v = val
					break cluster
				}
				p, ok := known[string(ch)]
				if !ok {
					return nil, usagef("unknown option -%c", ch)
				}
				*p = true
			}
		default:
			pos = append(pos, a)
		}
	}
	return pos, nil
}

// open builds the toolstack from the environment: $XENO_STATE_DIR, the
// hv binary ($XENO_HV, else `hv` beside this xl, else on $PATH) and this
// xl itself for the monitor.
func open() (*toolstack.Toolstack, error) {
	st, err := toolstack.OpenState(toolstack.StateDirFromEnv())
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find my own executable: %w", err)
	}
	hv, err := hvPath(self)
	if err != nil {
		return nil, err
	}
	// The monitor and the hv run in /, so the paths must not be relative.
	abs, err := filepath.Abs(st.Dir)
	if err != nil {
		return nil, err
	}
	st.Dir = abs
	return &toolstack.Toolstack{State: st, HV: hv, XL: self}, nil
}

// hvPath is the hv binary domains run with, as an absolute path:
// $XENO_HV, else `hv` beside the xl executable self, else on $PATH.
func hvPath(self string) (string, error) {
	hv := os.Getenv("XENO_HV")
	if hv == "" {
		hv = filepath.Join(filepath.Dir(self), "hv")
		if _, err := os.Stat(hv); err != nil {
			if p, err := exec.LookPath("hv"); err == nil {
				hv = p
			}
		}
	}
	return filepath.Abs(hv)
}
