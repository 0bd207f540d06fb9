package toolstack

import (
	"bufio"
	"net"
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
