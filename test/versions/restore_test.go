package versions_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/toolstack"
)

// TestMatrixRestore is the table at restore time (docs/versions.md,
// docs/snapshot.md): a domain of each guest interface, saved with xl save
// under every hv build that admits it, is restored with xl restore by
// every build. The snapshot's interface is admitted or refused by the
// restoring build exactly as at creation: a refused cell fails before
// anything starts, names both hv releases and the rule, and leaves no
// record; an admitted one counts on from where it was saved, and a guest
// admitted in compat mode on either side is in compat mode after.
func TestMatrixRestore(t *testing.T) {
	hvs, gs := setup(t)
	testenv.RequireKVM(t)
	counter := testenv.Guest(t, "counter")
	for _, g := range gs {
		for _, src := range hvs {
			if want[g.Label][src.Label] == abi.Refuse {
				continue
			}
			snap, last := saveCounter(t, src, g, counter)
			for _, dst := range hvs {
				verdict := want[g.Label][dst.Label]
				t.Run(fmt.Sprintf("%s saved on %s restored on %s", g.Label, src.Label, dst.Label), func(t *testing.T) {
					state := filepath.Join(shortDir(t), "state")
					_, errOut, code := xl(t, dst, state, "restore", snap)
					if verdict == abi.Refuse {
						if code == 0 {
							t.Fatalf("xl restore of a refused snapshot succeeded:\n%s", errOut)
						}
						for _, must := range []string{"snapshot of hv " + src.Release, "refused by hv " + dst.Release, "rule "} {
							if !strings.Contains(errOut, must) {
								t.Errorf("refusal does not name %q:\n%s", must, errOut)
							}
						}
						assertNothingLeft(t, dst, state)
						return
					}
					if code != 0 {
						t.Fatalf("xl restore: exit %d:\n%s", code, errOut)
					}
					d := listed(t, dst, state)
					defer xl(t, dst, state, "destroy", "m")
					waitCount(t, state, d.ID, last+3)
					// It counts on, not again: the save may have cut
					// line last+1, so the first whole one is that or
					// the next.
					if ns := testenv.Counts(t, consoleLog(state, d.ID)); ns[0] != last+1 && ns[0] != last+2 {
						t.Errorf("the restored guest's first count is %d, want %d", ns[0], last+1)
					}
					wantCompat := want[g.Label][src.Label] == abi.Compat || verdict == abi.Compat
					if d.Compat != wantCompat || d.Admitted == "" {
						t.Errorf("restored domain: admitted %q, compat %v; want compat %v", d.Admitted, d.Compat, wantCompat)
					}
				})
			}
		}
	}
}

// saveCounter creates the counter guest declaring g's interface under
// build b, lets it count, saves it with xl save and returns the snapshot
// and the last count its console showed.
func saveCounter(t *testing.T, b hvBuild, g guestCase, kernel string) (string, int) {
	t.Helper()
	dir := shortDir(t)
	state := filepath.Join(dir, "state")
	cfg := writeCfg(t, dir, "m", g.Iface, kernel)
	if _, errOut, code := xl(t, b, state, "create", cfg); code != 0 {
		t.Fatalf("%s on %s: xl create: exit %d:\n%s", g.Label, b.Label, code, errOut)
	}
	id := listed(t, b, state).ID
	waitCount(t, state, id, 5)
	// save -p keeps the domain, paused, so that its console is read
	// complete before xl destroy removes it.
	snap := filepath.Join(dir, "m.snap")
	if _, errOut, code := xl(t, b, state, "save", "-p", "m", snap); code != 0 {
		t.Fatalf("%s on %s: xl save: exit %d:\n%s", g.Label, b.Label, code, errOut)
	}
	log := consoleLog(state, id)
	if _, errOut, code := xl(t, b, state, "destroy", "m"); code != 0 {
		t.Fatalf("%s on %s: xl destroy: exit %d:\n%s", g.Label, b.Label, code, errOut)
	}
	ns := testenv.Counts(t, log)
	return snap, ns[len(ns)-1]
}

// shortDir is a temporary directory whose path leaves room for the
// domains' Unix sockets (t.TempDir holds the long subtest name): with a
// long one the domain gets no vsock device, and a snapshot with one is
// then refused as not this domain's.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "xmr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type domain struct {
	ID       int    `json:"id"`
	Name     string `json:"name"`
	Admitted string `json:"admitted_interface"`
	Compat   bool   `json:"compat"`
}

// listed is domain m of xl list -l.
func listed(t *testing.T, b hvBuild, state string) domain {
	t.Helper()
	out, errOut, code := xl(t, b, state, "list", "-l")
	var ds []domain
	if code == 0 && json.Unmarshal([]byte(out), &ds) == nil {
		for _, d := range ds {
			if d.Name == "m" {
				return d
			}
		}
	}
	t.Fatalf("xl list -l: exit %d, no domain m:\n%s%s", code, out, errOut)
	return domain{}
}

func consoleLog(state string, id int) string {
	b, _ := os.ReadFile((&toolstack.State{Dir: state}).ConsoleLog(id))
	return string(b)
}

// waitCount waits until domain id's console has counted to n.
func waitCount(t *testing.T, state string, id, n int) {
	t.Helper()
	want := fmt.Sprintf("XTF COUNT %d\n", n)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(consoleLog(state, id), want); {
		if time.Now().After(deadline) {
			t.Fatalf("domain %d's console did not count to %d in 30 s:\n%s", id, n, consoleLog(state, id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
