package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/internal/atomicfile"
)

// ControlServer serves the control socket (hv/control) for one VM.
type ControlServer struct {
	ln   net.Listener
	path string
	v    *VM
}

// ListenControl creates the control socket, mode 0600.
func ListenControl(path string) (*ControlServer, error) {
	ln, err := listenUnix(path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &ControlServer{ln: ln, path: path}, nil
}

// Serve answers requests for v until Close.
func (s *ControlServer) Serve(v *VM) {
	s.v = v
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.handle(conn)
	}
}

func (s *ControlServer) handle(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	enc := json.NewEncoder(conn)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && err != nil {
			return
		}
		var req control.Request
		var resp control.Response
		if jerr := json.Unmarshal(line, &req); jerr != nil {
			resp.Error = "bad request: " + jerr.Error()
		} else {
			resp = s.do(req.Cmd)
		}
		if enc.Encode(resp) != nil || err != nil {
			return
		}
	}
}

func (s *ControlServer) do(cmd string) control.Response {
	v := s.v
	ok := func() control.Response {
		st := v.Status()
		return control.Response{OK: true, Status: &st}
	}
	fail := func(err error) control.Response { return control.Response{Error: err.Error()} }
	switch cmd {
	case control.CmdStatus:
		return ok()
	case control.CmdPause:
		if err := v.Pause(); err != nil {
			return fail(err)
		}
		return ok()
	case control.CmdResume:
		v.Resume()
		return ok()
	case control.CmdShutdown:
		if err := v.PowerButton(); err != nil {
			return fail(err)
		}
		return ok()
	case control.CmdReboot:
		if err := v.RequestReboot(); err != nil {
			return fail(err)
		}
		return ok()
	case control.CmdReset:
		v.Reset()
		return ok()
	case control.CmdDestroy:
		v.Destroy()
		return ok()
	}
	return fail(fmt.Errorf("unknown command %q", cmd))
}

// Close stops serving and removes the socket.
func (s *ControlServer) Close() {
	s.ln.Close()
	os.Remove(s.path)
}

// WriteExit writes e to control.ExitFile(sock) atomically.
func WriteExit(sock string, e control.Exit) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(control.ExitFile(sock), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("exit file: %w", err)
	}
	return nil
}
