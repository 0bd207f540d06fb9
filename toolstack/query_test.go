package toolstack

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestVsockExchange plays the hv's side of the CONNECT handshake and the
// guest's answer.
func TestVsockExchange(t *testing.T) {
	for _, tc := range []struct {
		name, hv, want, err string
	}{
		{"answer", "OK 1073741824\nrunning as interface 1.2 (stable-same-line)\n", "running as interface 1.2 (stable-same-line)", ""},
		{"refused", "", "", "refused"},
		{"bad handshake", "NO\n", "", "unexpected answer"},
		{"no answer", "OK 5\n", "", "no answer"},
		{"long answer", "OK 5\n" + strings.Repeat("x", maxAnswer+1) + "\n", "", "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, hv := net.Pipe()
			defer client.Close()
			go func() {
				defer hv.Close()
				br := bufio.NewReader(hv)
				if l, err := br.ReadString('\n'); err != nil || l != "CONNECT 1024\n" {
					t.Errorf("handshake line %q, %v", l, err)
					return
				}
				hv.Write([]byte(tc.hv)[:min(len(tc.hv), strings.IndexByte(tc.hv, '\n')+1)])
				if !strings.HasPrefix(tc.hv, "OK") {
					return
				}
				if l, err := br.ReadString('\n'); err != nil || l != "interface\n" {
					t.Errorf("request %q, %v", l, err)
					return
				}
				hv.Write([]byte(tc.hv[strings.IndexByte(tc.hv, '\n')+1:]))
			}()
			got, err := vsockExchange(client, 1024, "interface")
			if tc.err == "" && (err != nil || got != tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %q, %v; want an error with %q", got, err, tc.err)
			}
		})
	}
}

// TestVsockPaths: a domain's vsock socket sits beside its other
// sockets with CID 3 + ID, is passed to the hv, and is left out when the
// path would not fit a Unix socket address with _PORT added.
func TestVsockPaths(t *testing.T) {
	ts := newToolstack(t)
	r := &Record{ID: 7, Config: &Config{Kernel: "/k", MemoryMiB: 64, VCPUs: 1}}
	ts.setPaths(r)
	if r.Vsock != filepath.Join(ts.State.HVDir(7), "vsock.sock") || r.VsockCID != 10 {
		t.Fatalf("vsock %q cid %d", r.Vsock, r.VsockCID)
	}
	args := strings.Join(ts.hvArgs(r, false, ""), " ")
	if want := "--vsock cid=10,uds=" + r.Vsock; !strings.Contains(args, want) {
		t.Errorf("hv args %q lack %q", args, want)
	}
	deep := &Toolstack{State: &State{Dir: "/" + strings.Repeat("d", MaxVsockPath)}}
	deep.setPaths(r)
	if r.Vsock != "" || r.VsockCID != 0 || strings.Contains(strings.Join(deep.hvArgs(r, false, ""), " "), "--vsock") {
		t.Errorf("a %d-byte state dir still got vsock %q", MaxVsockPath, r.Vsock)
	}
}

// TestRestoreVsock: a restored domain has the vsock device its snapshot
// holds, whatever its state directory's depth would give a new one; one
// that cannot is refused with the reason, not left to the hv's "no such
// part" for the device's section.
func TestRestoreVsock(t *testing.T) {
	yes, no := true, false
	shallow := newToolstack(t)
	deep := &Toolstack{State: &State{Dir: "/" + strings.Repeat("d", MaxVsockPath)}}
	for _, c := range []struct {
		name      string
		ts        *Toolstack
		saved     *bool
		wantVsock bool
		refused   bool
	}{
		{"create", shallow, nil, true, false},
		{"saved with", shallow, &yes, true, false},
		{"saved without", shallow, &no, false, false},
		{"saved without, deep", deep, &no, false, false},
		{"saved with, deep", deep, &yes, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &Record{ID: 7, Config: &Config{Kernel: "/k", MemoryMiB: 64, VCPUs: 1}}
			c.ts.setPaths(r)
			err := restoreVsock(r, c.saved)
			var ref *Refusal
			switch {
			case c.refused && (!errors.As(err, &ref) || ref.Rule != "vsock-path" || !strings.Contains(err.Error(), "XENO_STATE_DIR")):
				t.Fatalf("err %v: want a vsock-path refusal naming XENO_STATE_DIR", err)
			case !c.refused && err != nil:
				t.Fatal(err)
			}
			if got := r.Vsock != ""; !c.refused && (got != c.wantVsock || got != (r.VsockCID != 0)) {
				t.Errorf("vsock %q cid %d, want a device: %v", r.Vsock, r.VsockCID, c.wantVsock)
			}
		})
	}
	// xl save records the device in the snapshot's header.
	r := &Record{ID: 7, Config: &Config{Name: "v", Kernel: "/k", MemoryMiB: 64, VCPUs: 1}}
	shallow.setPaths(r)
	b, err := savedOf(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sd SavedDomain
	if err := json.Unmarshal(b, &sd); err != nil || sd.Vsock == nil || !*sd.Vsock {
		t.Fatalf("saved domain %s (%v): want vsock true", b, err)
	}
}
