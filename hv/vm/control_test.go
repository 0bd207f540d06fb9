package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
)

// TestControlSaveNeedsFile checks the control socket's end of a save:
// without a file passed with the request it is refused; with one
// (SCM_RIGHTS) the request reaches the save, here refused for its
// "after", which shows the file arrived with its line.
func TestControlSaveNeedsFile(t *testing.T) {
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "c.sock")
	srv, err := ListenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(v)
	_, err = control.CallFile(sock, control.Request{Cmd: control.CmdSave}, nil, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no file was passed") {
		t.Errorf("save without a file: %v", err)
	}
	f, err := os.Create(filepath.Join(dir, "s.snap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = control.CallFile(sock, control.Request{Cmd: control.CmdSave, After: "sideways"}, f, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), `after "sideways"`) {
		t.Errorf("save with a file and a bad after: %v", err)
	}
	if st, err := control.Call(sock, control.CmdStatus, 5*time.Second); err != nil || st.Status.State != control.StateRunning {
		t.Errorf("status after the refused saves: %+v, %v", st, err)
	}
}

// TestResumeRefusedWhileSaving: a resume request during a save must not
// unpark the vCPUs whose state the save is reading.
func TestResumeRefusedWhileSaving(t *testing.T) {
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	if err := v.Pause(); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	v.saving = true
	v.mu.Unlock()
	err := v.Resume()
	v.mu.Lock()
	paused := v.paused
	v.mu.Unlock()
	if err == nil || !paused {
		t.Fatalf("resume during a save: %v, paused %v", err, paused)
	}
	v.saveMu.Lock()
	_, err = v.SaveTo(os.Stdout, control.SavePause, nil, true)
	v.saveMu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "another save") {
		t.Errorf("a second save: %v", err)
	}
}
