package xl

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/xeno-hv/xeno/toolstack"
)

// selected returns the records named by doms (all if none), in ID order.
// Any of them whose monitor died is adopted first (docs/xl.md), so that
// what the command sees and does is current.
func selected(io IO, ts *toolstack.Toolstack, doms []string) ([]*toolstack.Record, error) {
	recs, err := lookup(ts, doms)
	if err != nil {
		return nil, err
	}
	changed, err := ts.AdoptOrphans(recs)
	warn(io, err)
	if changed {
		return lookup(ts, doms)
	}
	return recs, nil
}

func lookup(ts *toolstack.Toolstack, doms []string) ([]*toolstack.Record, error) {
	if len(doms) == 0 {
		return ts.State.Records()
	}
	var out []*toolstack.Record
	for _, d := range doms {
		r, err := ts.State.Find(d)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// warn prints each of err's errors as a warning: the command goes on.
func warn(io IO, err error) {
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintf(io.Stderr, "xl: warning: %v\n", e)
	}
}

// stateLetters are xl list's state columns, in xl's order.
var stateLetters = [...]struct {
	flag   toolstack.Flags
	letter byte
}{
	{toolstack.FlagRunning, 'r'},
	{toolstack.FlagBlocked, 'b'},
	{toolstack.FlagPaused, 'p'},
	{toolstack.FlagShutdown, 's'},
	{toolstack.FlagCrashed, 'c'},
	{toolstack.FlagDying, 'd'},
}

// stateColumn is xl's six-letter state field: a letter for each flag
// that holds, '-' for each that does not.
func stateColumn(f toolstack.Flags) string {
	b := make([]byte, len(stateLetters))
	for i, s := range stateLetters {
		b[i] = '-'
		if f&s.flag != 0 {
			b[i] = s.letter
		}
	}
	return string(b)
}

func cpuSeconds(in toolstack.Info) float64 {
	if in.Live == nil {
		return 0
	}
	return float64(in.Live.CPUTimeNS) / 1e9
}

// listCmd prints xl list's table. xeno has no dom0, so there is no
// Domain-0 line (docs/xl.md explains why).
func listCmd(io IO, args []string) error {
	var long, verbose bool
	pos, err := flags(args, map[string]*bool{"l": &long, "long": &long, "v": &verbose, "verbose": &verbose})
	if err != nil {
		return err
	}
	ts, err := open()
	if err != nil {
		return err
	}
	recs, err := selected(io, ts, pos)
	if err != nil {
		return err
	}
	// One status call per live domain, all at once: a slow or stuck hv
	// costs its timeout once, not once per domain after it.
	infos := make([]toolstack.Info, len(recs))
	var wg sync.WaitGroup
	for i, r := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos[i] = ts.Inspect(r)
		}()
	}
	wg.Wait()
	if long {
		type entry struct {
			*toolstack.Record
			StateLetters string  `json:"xl_state"`
			CPUSeconds   float64 `json:"cpu_time_s"`
			Live         any     `json:"live,omitempty"`
		}
		out := make([]entry, 0, len(infos))
		for _, in := range infos {
			e := entry{Record: in.Record, StateLetters: stateColumn(in.Flags), CPUSeconds: cpuSeconds(in)}
			if in.Live != nil {
				e.Live = in.Live
			}
			out = append(out, e)
		}
		b, err := json.MarshalIndent(out, "", "    ")
		if err != nil {
			return err
		}
		fmt.Fprintf(io.Stdout, "%s\n", b)
		return nil
	}
	if verbose {
		fmt.Fprintf(io.Stdout, "%-40s %5s %5s %5s     %-6s %9s %-36s %-10s %s\n", "Name", "ID", "Mem", "VCPUs", "State", "Time(s)", "UUID", "Interface", "Compat")
	} else {
		fmt.Fprintf(io.Stdout, "%-40s %5s %5s %5s     %-6s %9s\n", "Name", "ID", "Mem", "VCPUs", "State", "Time(s)")
	}
	for _, in := range infos {
		r := in.Record
		line := fmt.Sprintf("%-40s %5d %5d %5d     %s %9.1f", r.Name, r.ID, r.Config.MemoryMiB, r.Config.VCPUs, stateColumn(in.Flags), cpuSeconds(in))
		if verbose {
			iface := r.Admitted
			if r.Unchecked && iface == "" {
				iface = "unchecked"
			}
			compat := "no"
			if r.Compat {
				compat = "yes"
			}
			line += fmt.Sprintf(" %-36s %-10s %s", r.UUID, iface, compat)
		}
		fmt.Fprintln(io.Stdout, line)
	}
	return nil
}

func formatUptime(d time.Duration) string {
	s := int64(d.Seconds())
	days, s := s/86400, s%86400
	h, m, sec := s/3600, s%3600/60, s%60
	switch {
	case days == 1:
		return fmt.Sprintf("1 day, %2d:%02d:%02d", h, m, sec)
	case days > 1:
		return fmt.Sprintf("%d days, %2d:%02d:%02d", days, h, m, sec)
	}
	return fmt.Sprintf("%2d:%02d:%02d", h, m, sec)
}

func uptimeCmd(io IO, args []string) error {
	pos, err := flags(args, nil)
	if err != nil {
		return err
	}
	ts, err := open()
	if err != nil {
		return err
	}
	recs, err := selected(io, ts, pos)
	if err != nil {
		return err
	}
	fmt.Fprintf(io.Stdout, "%-32s %5s %s\n", "Name", "ID", "Uptime")
	now := time.Now()
	for _, r := range recs {
		up := time.Duration(0)
		if r.State == toolstack.StateRunning && !r.Start.IsZero() {
			up = now.Sub(r.Start)
		}
		fmt.Fprintf(io.Stdout, "%-32s %5d %s\n", r.Name, r.ID, formatUptime(up))
	}
	return nil
}

func domidCmd(io IO, args []string) error {
	name, err := oneDom(args)
	if err != nil {
		return err
	}
	ts, err := open()
	if err != nil {
		return err
	}
	recs, err := selected(io, ts, nil)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Name == name {
			fmt.Fprintln(io.Stdout, r.ID)
			return nil
		}
	}
	return fmt.Errorf("no domain named %q", name)
}

func domnameCmd(io IO, args []string) error {
	s, err := oneDom(args)
	if err != nil {
		return err
	}
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 {
		return usagef("%q is not a domain ID", s)
	}
	ts, err := open()
	if err != nil {
		return err
	}
	recs, err := selected(io, ts, []string{strconv.Itoa(id)})
	if err != nil {
		return err
	}
	fmt.Fprintln(io.Stdout, recs[0].Name)
	return nil
}
