package toolstack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOpenStateRefusesLooseDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	st, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(st.Dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenState(dir); err == nil || !strings.Contains(err.Error(), "0700") {
		t.Errorf("0755 state dir: %v", err)
	}
	if os.Geteuid() == 0 {
		os.Chmod(dir, 0o700)
		if err := os.Chown(dir, 12345, 12345); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenState(dir); err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
			t.Errorf("foreign state dir: %v", err)
		}
	}
}

// newToolstack is a toolstack over a new state directory, with no hv.
func newToolstack(t *testing.T) *Toolstack {
	t.Helper()
	st, err := OpenState(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	return &Toolstack{State: st}
}

func plan(name string) *Plan {
	return &Plan{Config: &Config{Name: name, UUID: NewUUID(), MemoryMiB: 64, VCPUs: 1}}
}

// Many concurrent reservations: IDs are unique and increasing, and of
// those sharing a name exactly one wins.
func TestReserveConcurrent(t *testing.T) {
	ts := newToolstack(t)
	st := ts.State
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[int]bool{}
	wins := map[string]int{}
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := []string{"a", "b", "c", "d"}[i%4]
			r, err := ts.Reserve(plan(name))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if !strings.Contains(err.Error(), "already exists") {
					t.Errorf("reserve: %v", err)
				}
				return
			}
			if ids[r.ID] {
				t.Errorf("ID %d given twice", r.ID)
			}
			ids[r.ID] = true
			wins[name]++
		}(i)
	}
	wg.Wait()
	for _, n := range []string{"a", "b", "c", "d"} {
		if wins[n] != 1 {
			t.Errorf("name %s reserved %d times", n, wins[n])
		}
	}
	recs, _ := st.Records()
	if len(recs) != 4 {
		t.Errorf("%d records, want 4", len(recs))
	}
	// IDs are never reused, even after a record is removed.
	st.Remove(recs[3].ID)
	r, err := ts.Reserve(plan("e"))
	if err != nil || r.ID <= recs[3].ID {
		t.Errorf("after removal got ID %v (%v), want > %d", r, err, recs[3].ID)
	}
	if got, err := st.Find("e"); err != nil || got.ID != r.ID {
		t.Errorf("Find by name: %v %v", got, err)
	}
	if got, err := st.Find(strconv.Itoa(r.ID)); err != nil || got.Name != "e" {
		t.Errorf("Find by ID: %v %v", got, err)
	}
	if _, err := st.Find("nosuch"); err == nil {
		t.Error("Find of a missing name succeeded")
	}
}

// A record whose hv is gone without an exit (kill -9 with no monitor)
// shows as crashed; one whose pid was reused by another process too.
func TestInspectDeadHV(t *testing.T) {
	ts := newToolstack(t)
	r, err := ts.Reserve(plan("x"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.State, r.HVPid, r.HVStart = StateRunning, cmd.Process.Pid, procStart(cmd.Process.Pid)
	if r.HVStart == 0 {
		t.Fatal("no start time for a live process")
	}
	if !r.HVAlive() {
		t.Fatal("live process not alive")
	}
	cmd.Process.Kill()
	cmd.Wait()
	time.Sleep(10 * time.Millisecond)
	if r.HVAlive() {
		t.Fatal("dead process alive")
	}
	if in := ts.Inspect(r); in.Flags != FlagCrashed {
		t.Errorf("dead hv has flags %#x, want crashed", in.Flags)
	}
	r.HVPid, r.HVStart = os.Getpid(), 12345 // our pid, another start time
	if r.HVAlive() {
		t.Error("reused pid taken for the hv")
	}
}

// A domain that restarts (its directory renamed to the new ID, then its
// record rewritten) is never missing from a listing taken meanwhile:
// xl list must show it and xl destroy NAME must find it.
func TestRecordsDuringRestart(t *testing.T) {
	ts := newToolstack(t)
	r, err := ts.Reserve(plan("spin"))
	if err != nil {
		t.Fatal(err)
	}
	id := r.ID
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			nr, err := ts.update(id, func(r *Record) error { return ts.renumber(r) })
			if err != nil {
				done <- err
				return
			}
			id = nr.ID
			// A restart at most every 200 µs, far faster than an hv
			// starts, and yet with gaps for a listing to get through.
			time.Sleep(200 * time.Microsecond)
		}
	}()
	missed := 0
	for i := 0; i < 2000; i++ {
		if _, err := ts.State.Find("spin"); err != nil {
			missed++
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if missed > 0 {
		t.Errorf("the restarting domain was missing from %d of 2000 listings", missed)
	}
}
