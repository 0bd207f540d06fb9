package xl

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/toolstack"
)

// saveCmd is `xl save [-c] [-p] DOM FILE [CFG]`: the domain's state goes
// to FILE and the domain ends, or with -c runs on, with -p stays paused.
// CFG is stored in FILE instead of the domain's config.
func saveCmd(io IO, args []string) error {
	var resume, pause bool
	pos, err := flags(args, map[string]*bool{"c": &resume, "p": &pause})
	if err != nil {
		return err
	}
	if len(pos) < 2 || len(pos) > 3 {
		return usagef("want DOM FILE [CFG]")
	}
	after := toolstack.AfterDestroy
	switch {
	case resume && pause:
		return usagef("-c (the domain runs on) and -p (it stays paused) exclude each other")
	case resume:
		after = toolstack.AfterResume
	case pause:
		after = toolstack.AfterPause
	}
	var cfg *toolstack.Config
	if len(pos) == 3 {
		if cfg, err = loadConfig(io, pos[2], nil); err != nil {
			return err
		}
	}
	ts, err := open()
	if err != nil {
		return err
	}
	if _, err := selected(io, ts, pos[:1]); err != nil {
		return err
	}
	return ts.Save(pos[0], pos[1], after, cfg)
}

// restoreCmd is `xl restore [-p] [-c] [-e] [CFG] FILE`: the domain saved
// in FILE starts under a new ID, with its name and UUID. -p leaves it
// paused, -c attaches the console. -e is accepted: xl's says not to
// wait in the background for the domain's death, but in xeno the
// monitor that does is also the hv's parent and applies on_*, so every
// domain has one.
func restoreCmd(io IO, args []string) error {
	var paused, console, noWait bool
	pos, err := flags(args, map[string]*bool{"p": &paused, "c": &console, "e": &noWait})
	if err != nil {
		return err
	}
	var cfg *toolstack.Config
	switch len(pos) {
	case 1:
	case 2:
		if cfg, err = loadConfig(io, pos[0], nil); err != nil {
			return err
		}
		pos = pos[1:]
	default:
		return usagef("want [CFG] FILE")
	}
	// The monitor and the hv run in /.
	file, err := filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	ts, err := open()
	if err != nil {
		return err
	}
	opt, err := restoreOptions(io, "restore", ts, cfg, paused)
	if err != nil {
		return err
	}
	p, err := toolstack.CheckRestore(file, opt)
	if err != nil {
		return err
	}
	// An orphan that has ended may free the name.
	if _, err := selected(io, ts, nil); err != nil {
		return err
	}
	rec, err := ts.Restore(p, toolstack.CreateOptions{Paused: paused, Restore: file})
	if err != nil {
		return err
	}
	fmt.Fprintf(io.Stderr, "Restored domain %s (id=%d)\n", rec.Name, rec.ID)
	if console {
		return attach(io, ts, strconv.Itoa(rec.ID))
	}
	return nil
}

// restoreOptions are what a restore decides with: the hv that will run
// the domain (its --version; xl's own stamp, with a warning, if that
// fails, and that hv then decides again on its own) and the host.
func restoreOptions(io IO, cmd string, ts *toolstack.Toolstack, cfg *toolstack.Config, paused bool) (toolstack.RestoreOptions, error) {
	host, err := toolstack.ReadHost()
	if err != nil {
		return toolstack.RestoreOptions{}, err
	}
	build := abi.Current()
	if st, err := queryHV(ts.HV); err != nil {
		fmt.Fprintf(io.Stderr, "xl %s: warning: deciding with xl's own stamp %s: %v\n", cmd, build.Release, err)
	} else {
		build = st.Build
	}
	return toolstack.RestoreOptions{Config: cfg, Build: build, Host: host, Paused: paused}, nil
}

// migrateCmd is `xl migrate [-s SSHCOMMAND] [--debug] DOM HOST`: the
// receiver is `SSHCOMMAND HOST xl migrate-receive` (SSHCOMMAND "ssh" by
// default, split into words as a shell splits simple words), or with an
// empty SSHCOMMAND, as in xl, HOST's words alone.
func migrateCmd(io IO, args []string) error {
	var debug bool
	// A NUL cannot come from a command line: it marks -s not given,
	// which differs from -s "".
	const unset = "\x00"
	ssh := unset
	pos, err := flagValues(args, map[string]*bool{"debug": &debug}, map[string]*string{"s": &ssh})
	if err != nil {
		return err
	}
	if ssh == unset {
		ssh = "ssh"
	}
	if len(pos) != 2 {
		return usagef("want DOM HOST")
	}
	dom, host := pos[0], pos[1]
	argv, err := receiverCommand(ssh, host)
	if err != nil {
		return usagef("%v", err)
	}
	ts, err := open()
	if err != nil {
		return err
	}
	if _, err := selected(io, ts, []string{dom}); err != nil {
		return err
	}
	opt := toolstack.MigrateOptions{Receiver: argv, Stderr: io.Stderr}
	if debug {
		opt.Debug = io.Stderr
	}
	m, err := ts.Migrate(dom, opt)
	if err != nil {
		return err
	}
	if st := m.Save; st != nil {
		fmt.Fprintf(io.Stderr, "Live migration: %d rounds, %d pages (%s) sent, downtime %s\n",
			len(st.Rounds), st.Pages, mib(st.Bytes), time.Duration(st.DowntimeNS).Round(100*time.Microsecond))
	}
	fmt.Fprintf(io.Stderr, "Migrated domain %s to %s (id=%d there)\n", dom, host, m.ID)
	return nil
}

// mib is a byte count in MiB, one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// receiverCommand is the receiver's argv for xl migrate -s ssh HOST.
func receiverCommand(ssh, host string) ([]string, error) {
	if ssh == "" {
		argv, err := splitWords(host)
		if err == nil && len(argv) == 0 {
			err = errors.New("HOST is empty, and with -s \"\" it is the whole receiver command")
		}
		if err != nil {
			return nil, fmt.Errorf("HOST %q: %w", host, err)
		}
		return argv, nil
	}
	argv, err := splitWords(ssh)
	if err == nil && len(argv) == 0 {
		err = errors.New("no command")
	}
	if err != nil {
		return nil, fmt.Errorf("-s %q: %w", ssh, err)
	}
	if host == "" {
		return nil, errors.New("HOST is empty")
	}
	return append(argv, host, "xl", "migrate-receive"), nil
}

// splitWords splits s into words as sh does for simple words: blanks
// separate, '...' quotes literally, "..." quotes with \" \\ \$ \`
// escapes, a backslash outside quotes escapes the next character. What
// needs more of a shell (pipes, redirections, variables, globs) is
// refused: put it in a script.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unbalanced '")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				} else if s[i] == '$' || s[i] == '`' {
					return nil, fmt.Errorf("%q inside \"...\" needs a shell: put the command in a script", s[i])
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unbalanced \"")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("a trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte("|&;<>()$`*?[]#~{}", c) >= 0:
			return nil, fmt.Errorf("%q needs a shell: put the command in a script", c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// migrateReceiveCmd is `xl migrate-receive`, which xl migrate runs on the
// target: the stream on stdin, the answer on stdout.
func migrateReceiveCmd(io IO, args []string) error {
	pos, err := flags(args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("no arguments expected: the stream comes on stdin")
	}
	// The sender may go away: a write to stdout must fail with EPIPE
	// (and the restored domain be destroyed), not kill xl.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)
	ts, err := open()
	if err != nil {
		fmt.Fprintf(io.Stdout, "error: %v\n", err)
		return err
	}
	opt, err := restoreOptions(io, "migrate-receive", ts, nil, false)
	if err != nil {
		fmt.Fprintf(io.Stdout, "error: %v\n", err)
		return err
	}
	// An orphan that has ended may free the name.
	if _, err := selected(io, ts, nil); err != nil {
		fmt.Fprintf(io.Stdout, "error: %v\n", err)
		return err
	}
	id, err := ts.MigrateReceive(io.Stdin, io.Stdout, opt)
	if err != nil {
		return err
	}
	fmt.Fprintf(io.Stderr, "migrate-receive: restored as domain %d\n", id)
	return nil
}
