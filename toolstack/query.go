package toolstack

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
)

// QueryTimeout bounds a whole xl query: the hv's connect to the guest
// (at most 2 s) and the guest's answer.
const QueryTimeout = 10 * time.Second

// maxAnswer bounds the line a guest answers with.
const maxAnswer = 4096

// Query asks a running domain's xeno-init one request on its command
// channel (vsock port abi.ChannelPort, through the hv's vsock Unix
// socket) and returns the one-line answer.
func (t *Toolstack) Query(dom, req string) (string, error) {
	if req == "" || strings.ContainsAny(req, "\r\n") {
		return "", fmt.Errorf("toolstack: query %q: want one word", req)
	}
	r, err := t.running(dom)
	if err != nil {
		return "", err
	}
	if r.Vsock == "" {
		return "", fmt.Errorf("toolstack: domain %s has no vsock device", r.Name)
	}
	c, err := net.DialTimeout("unix", r.Vsock, QueryTimeout)
	if err != nil {
		return "", fmt.Errorf("toolstack: domain %s: %w", r.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(QueryTimeout))
	ans, err := vsockExchange(c, abi.ChannelPort, req)
	if err != nil {
		return "", fmt.Errorf("toolstack: domain %s: %w", r.Name, err)
	}
	return ans, nil
}

// vsockExchange does the hv's CONNECT handshake to guest port on c,
// sends req and reads one line back.
func vsockExchange(c net.Conn, port uint32, req string) (string, error) {
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return "", err
	}
	br := bufio.NewReaderSize(c, maxAnswer)
	ok, err := br.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("vsock port %d refused: nothing listens in the guest (is it xeno-init, and up?): %w", port, err)
	}
	if f := strings.Fields(ok); len(f) != 2 || f[0] != "OK" {
		return "", fmt.Errorf("vsock: unexpected answer %q to CONNECT", ok)
	} else if _, err := strconv.ParseUint(f[1], 10, 32); err != nil {
		return "", fmt.Errorf("vsock: unexpected answer %q to CONNECT", ok)
	}
	if _, err := fmt.Fprintf(c, "%s\n", req); err != nil {
		return "", err
	}
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("the guest's answer is longer than %d bytes", maxAnswer)
	}
	if err != nil {
		return "", fmt.Errorf("no answer from the guest: %w", err)
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}
