package toolstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xeno-hv/xeno/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// DefaultStateDir is where domain records live unless XENO_STATE_DIR says
// otherwise; /run is a tmpfs, so records die with the host as domains do.
const DefaultStateDir = "/run/xeno"

// StateDirFromEnv returns $XENO_STATE_DIR or DefaultStateDir.
func StateDirFromEnv() string {
	if d := os.Getenv("XENO_STATE_DIR"); d != "" {
		return d
	}
	return DefaultStateDir
}

// Domain states as stored in a record. A live domain's finer state
// (running, blocked, paused) comes from its hv.
const (
	StateCreating = "creating" // ID and name reserved, hv starting
	StateRunning  = "running"  // hv alive (ask it for more)
	StateShutdown = "shutdown" // stopped and preserved (on_* = preserve)
	StateCrashed  = "crashed"  // crashed and preserved, or its hv died
	StateDying    = "dying"    // xl destroy in progress
)

// Record is one domain's entry in the state directory.
type Record struct {
	ID           int       `json:"id"`
	Name         string    `json:"name"`
	UUID         string    `json:"uuid"`
	State        string    `json:"state"`
	Config       *Config   `json:"config"`
	HVPid        int       `json:"hv_pid"`
	HVStart      uint64    `json:"hv_start_ticks"` // /proc/PID/stat starttime, against pid reuse
	MonitorPid   int       `json:"monitor_pid"`
	MonitorStart uint64    `json:"monitor_start_ticks"`
	CreatorPid   int       `json:"creator_pid"`
	Control      string    `json:"control_socket"`
	Console      string    `json:"console_socket"`
	Vsock        string    `json:"vsock_socket,omitempty"` // the hv's vsock Unix socket (docs/xl.md)
	VsockCID     uint32    `json:"vsock_cid,omitempty"`
	Start        time.Time `json:"start_time"`
	Guest        string    `json:"guest_interface"`
	Declared     string    `json:"declared_by"`
	Admitted     string    `json:"admitted_interface"`
	Compat       bool      `json:"compat"`
	Unchecked    bool      `json:"unchecked_interface,omitempty"`
	OnPoweroff   Action    `json:"on_poweroff"`
	OnReboot     Action    `json:"on_reboot"`
	OnCrash      Action    `json:"on_crash"`
	ExitReason   string    `json:"exit_reason,omitempty"`
	ExitDetail   string    `json:"exit_detail,omitempty"`
	Restarts     int       `json:"restarts,omitempty"`
	// AllowUnjailed are the jail's layers the operator allowed off
	// (xl create --allow-unjailed), for every hv of the domain.
	AllowUnjailed []string `json:"allow_unjailed,omitempty"`
	// Jail is what the current (or last) hv runs under.
	Jail *Jail `json:"jail,omitempty"`
}

// State is an open state directory.
type State struct {
	Dir string
}

// OpenState opens (creating it 0700 if needed) the state directory, and
// refuses one that another user owns or that others can write: the
// records name processes that xl will signal.
func OpenState(dir string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("toolstack: state dir %s: %w", dir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("toolstack: state dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("toolstack: state dir %s is not a directory", dir)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("toolstack: state dir %s is owned by uid %d, not by you (uid %d); refusing to use it", dir, sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("toolstack: state dir %s has mode %v; want 0700 (others must not read or plant domain records)", dir, st.Mode().Perm())
	}
	if err := os.MkdirAll(filepath.Join(dir, domainsDir), 0o700); err != nil {
		return nil, fmt.Errorf("toolstack: %w", err)
	}
	return &State{Dir: dir}, nil
}

// The state directory's layout (docs/xl.md): these names are spelt here
// and nowhere else. The hv's exit file is hv/control's, beside the
// control socket.
const (
	lockFile   = "lock"
	nextIDFile = "next-id"
	domainsDir = "domains"

	// In each domain's directory, root's:
	recordFile = "record.json"
	monitorLog = "monitor.log"
	hvDir      = "hv"   // the hv's own: the one directory its jail holds
	jailDir    = "jail" // the mount point of the hv's private root

	// In the hv's directory, which the domain's uid owns:
	controlSocket = "control.sock"
	consoleSocket = "console.sock"
	vsockSocket   = "vsock.sock"
	hvLog         = "hv.log"
	consoleLog    = "console.log"
)

// DomainDir is where domain id's record and logs live.
func (s *State) DomainDir(id int) string {
	return filepath.Join(s.Dir, domainsDir, strconv.Itoa(id))
}

// HVDir is domain id's hv's directory: its sockets, exit file and logs.
// The hv's uid owns it, and its jail holds it (docs/security.md): the
// record beside it stays out of the hv's reach.
func (s *State) HVDir(id int) string { return filepath.Join(s.DomainDir(id), hvDir) }

// JailDir is the (empty) mount point of domain id's hv's private root.
func (s *State) JailDir(id int) string { return filepath.Join(s.DomainDir(id), jailDir) }

// HVLog is where domain id's hv logs (capped, with HVLog+".1" rotated).
func (s *State) HVLog(id int) string { return filepath.Join(s.HVDir(id), hvLog) }

// ConsoleLog is where domain id's hv copies its console (capped, with a
// rotated ConsoleLog+".1"), kept across restarts and after the domain
// stops.
func (s *State) ConsoleLog(id int) string { return filepath.Join(s.HVDir(id), consoleLog) }

// MonitorLog is where domain id's monitor logs.
func (s *State) MonitorLog(id int) string { return filepath.Join(s.DomainDir(id), monitorLog) }

// Lock takes the state directory's lock (flock on a lock file), which
// serialises ID allocation, name checks and record changes across every
// xl process. Call the returned function to release it.
func (s *State) Lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("toolstack: lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("toolstack: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// nextID allocates a domain ID from the counter file. Call with the lock
// held. IDs start at 1 (0 is Xen's dom0, which xeno does not have) and
// are never reused while the state directory lives, as Xen's domids
// grow until they wrap.
func (s *State) nextID() (int, error) {
	p := filepath.Join(s.Dir, nextIDFile)
	id := 1
	if b, err := os.ReadFile(p); err == nil {
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || n < 1 {
			return 0, fmt.Errorf("toolstack: %s: bad counter %q", p, b)
		}
		id = n
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("toolstack: %w", err)
	}
	if err := writeRecord(p, []byte(strconv.Itoa(id+1)+"\n")); err != nil {
		return 0, err
	}
	return id, nil
}

// writeRecord writes a file of the state directory so that a reader never
// sees half of it, and a crash of the host loses at most the last change:
// the records name the processes that xl signals.
func writeRecord(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("toolstack: %w", err)
	}
	return nil
}

func (s *State) recordPath(id int) string { return filepath.Join(s.DomainDir(id), recordFile) }

// Save writes r's record.
func (s *State) Save(r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("toolstack: %w", err)
	}
	return writeRecord(s.recordPath(r.ID), append(b, '\n'))
}

// Load reads the record of domain id.
func (s *State) Load(id int) (*Record, error) {
	b, err := os.ReadFile(s.recordPath(id))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &NoDomainError{What: strconv.Itoa(id)}
		}
		return nil, fmt.Errorf("toolstack: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("toolstack: %s: %w", s.recordPath(id), err)
	}
	if r.Config == nil {
		return nil, fmt.Errorf("toolstack: %s: not a domain record (no config)", s.recordPath(id))
	}
	if r.ID != id {
		return nil, fmt.Errorf("toolstack: %s: %w: ID %d in directory %d", s.recordPath(id), errMisplaced, r.ID, id)
	}
	return &r, nil
}

// errMisplaced is a record whose ID is not its directory's: a restart
// (renumber) has moved the directory and not yet rewritten the record.
var errMisplaced = errors.New("not this directory's record")

// Remove deletes domain id's directory: record, sockets and logs.
func (s *State) Remove(id int) error {
	if err := os.RemoveAll(s.DomainDir(id)); err != nil {
		return fmt.Errorf("toolstack: %w", err)
	}
	return nil
}

// Records returns every record, by ID. Unreadable ones are skipped: a
// record being written is renamed into place whole.
func (s *State) Records() ([]*Record, error) {
	// Readers take no lock (a caller may hold it), and a restart renames
	// its domain's directory and then rewrites the record under it: a
	// domain caught in between would be missing from the list, so xl
	// list would not show it and xl destroy NAME would not find it. A
	// listing that meets a vanished or misplaced record is read again.
	for try := 1; ; try++ {
		out, moving, err := s.records()
		if err != nil || !moving || try == recordsTries {
			return out, err
		}
		time.Sleep(time.Duration(try) * time.Millisecond)
	}
}

// recordsTries bounds Records' re-reads: about 50 ms in all, far more
// than a renumber takes.
const recordsTries = 10

// records is one listing; moving says a record vanished or was
// misplaced under it.
func (s *State) records() (out []*Record, moving bool, err error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, domainsDir))
	if err != nil {
		return nil, false, fmt.Errorf("toolstack: %w", err)
	}
	for _, e := range ents {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		r, err := s.Load(id)
		var nd *NoDomainError
		if errors.As(err, &nd) || errors.Is(err, errMisplaced) {
			moving = true
		}
		if err != nil {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, moving, nil
}

// NoDomainError says a DOM argument matched no domain.
type NoDomainError struct{ What string }

func (e *NoDomainError) Error() string {
	return fmt.Sprintf("toolstack: domain %s does not exist", e.What)
}

// Find resolves a DOM argument, a name or a numeric ID, as xl does.
func (s *State) Find(dom string) (*Record, error) {
	if id, err := strconv.Atoi(dom); err == nil {
		if id < 0 {
			return nil, &NoDomainError{What: dom}
		}
		r, err := s.Load(id)
		if err != nil {
			var nd *NoDomainError
			if errors.As(err, &nd) {
				return nil, &NoDomainError{What: dom}
			}
		}
		return r, err
	}
	recs, err := s.Records()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Name == dom {
			return r, nil
		}
	}
	return nil, &NoDomainError{What: dom}
}

// procStart returns the start time (clock ticks since boot) of pid from
// /proc/PID/stat, 0 if the process does not exist. Comparing it with the
// recorded one tells a live hv from an unrelated process that reused its
// pid.
func procStart(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may contain spaces and parentheses: fields
	// restart after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// After ")": state is field 3 of stat(5), starttime field 22.
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// Alive reports whether the hv recorded in r is still that process.
func (r *Record) HVAlive() bool {
	return r.HVPid > 0 && r.HVStart != 0 && procStart(r.HVPid) == r.HVStart
}
