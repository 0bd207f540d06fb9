package vm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

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

// Bounds of one control connection: a request line (a save's config
// included), and the files passed with requests and not yet taken.
const (
	maxRequest    = 1 << 20
	maxFilesQueue = 4
)

func (s *ControlServer) handle(conn net.Conn) {
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return
	}
	// Files passed with SCM_RIGHTS, in order, for requests that take one.
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	enc := json.NewEncoder(conn)
	var buf []byte
	chunk := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*maxFilesQueue))
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) > maxRequest {
				_ = enc.Encode(control.Response{Error: fmt.Sprintf("request longer than %d bytes", maxRequest)})
				return
			}
			n, oobn, _, _, err := uc.ReadMsgUnix(chunk, oob)
			files = append(files, receivedFiles(oob[:oobn])...)
			for len(files) > maxFilesQueue {
				files[0].Close()
				files = files[1:]
			}
			buf = append(buf, chunk[:n]...)
			if err != nil || n == 0 {
				if len(buf) == 0 {
					return
				}
				buf = append(buf, '\n') // a last line without its newline
			}
			continue
		}
		line := buf[:i+1]
		buf = buf[i+1:]
		var req control.Request
		var resp control.Response
		var then func()
		if jerr := json.Unmarshal(line, &req); jerr != nil {
			resp.Error = "bad request: " + jerr.Error()
		} else {
			var f *os.File
			if req.Cmd == control.CmdSave && len(files) > 0 {
				f, files = files[0], files[1:]
			}
			resp, then = s.do(req, f)
		}
		err := enc.Encode(resp)
		if then != nil {
			then() // after the answer: it may end the domain, and the hv with it
		}
		if err != nil {
			return
		}
	}
}

// receivedFiles are the files of SCM_RIGHTS messages in oob; anything
// else there is ignored.
func receivedFiles(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fs []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			fs = append(fs, os.NewFile(uintptr(fd), "snapshot"))
		}
	}
	return fs
}

// do serves one request; f is the file passed with it, if any, which it
// closes. then, if not nil, runs once the answer is sent.
func (s *ControlServer) do(req control.Request, f *os.File) (resp control.Response, then func()) {
	v := s.v
	ok := func() control.Response {
		st := v.Status()
		return control.Response{OK: true, Status: &st}
	}
	fail := func(err error) control.Response { return control.Response{Error: err.Error()} }
	switch req.Cmd {
	case control.CmdStatus:
		return ok(), nil
	case control.CmdPause:
		if err := v.Pause(); err != nil {
			return fail(err), nil
		}
		return ok(), nil
	case control.CmdResume:
		if err := v.Resume(); err != nil {
			return fail(err), nil
		}
		return ok(), nil
	case control.CmdShutdown:
		if err := v.PowerButton(); err != nil {
			return fail(err), nil
		}
		return ok(), nil
	case control.CmdReboot:
		if err := v.RequestReboot(); err != nil {
			return fail(err), nil
		}
		return ok(), nil
	case control.CmdReset:
		v.Reset()
		return ok(), nil
	case control.CmdDestroy:
		v.Destroy()
		return ok(), nil
	case control.CmdSave:
		if f == nil {
			return fail(errors.New("save: no file was passed with the request (SCM_RIGHTS)")), nil
		}
		defer f.Close()
		st, err := v.SaveTo(f, req.After, req.Config, req.Live)
		if err != nil {
			return fail(err), nil
		}
		resp := ok()
		resp.Save = st
		if req.After == "" || req.After == control.SaveDestroy {
			return resp, func() { v.stop(control.ReasonSaved, "saved to a snapshot") }
		}
		return resp, nil
	}
	return fail(fmt.Errorf("unknown command %q", req.Cmd)), nil
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
